/**
 * The generator's images pass the same cross-check as the real test guests: written out as an ELF
 * vmcore (dumpfmt's ElfWriter, with the guest's VMCOREINFO note), makedumpfile 1.7.2 `-d 31` counts
 * exactly the pages the generator intended in every class, and so does our Linux introspection
 * (plugin-linux, unchanged) reading the simulated RAM directly. makedumpfile also finds the panic line.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Bitmap, ElfWriter } from '@vicover/dumpfmt';
import { LinuxKernel } from '@vicover/plugin-linux';
import { ensureImage, normalizeSpec, SimGuestMemory, type GuestSpecInput } from '@vicover/plugin-simhost';
import { missingCommands } from '../../../test/tools/commands.mjs';


/** makedumpfile's page counts ("Pages filled with zero  : 0x…") from its stdout. */
function parseCounts(out: string): Record<string, number> {
  const get = (label: string) => {
    const m = new RegExp(`${label}\\s*:\\s*0x([0-9a-f]+)`).exec(out);
    if (!m) throw new Error(`no "${label}" in makedumpfile output:\n${out}`);
    return parseInt(m[1]!, 16);
  };
  return {
    zero: get('Pages filled with zero'),
    cache: get('Non-private cache pages'),
    privateCache: get('Private cache pages'),
    user: get('User process data pages'),
    free: get('Free pages'),
    hwpoison: get('Hwpoison pages'),
    offline: get('Offline pages'),
    remaining: get('Remaining pages'),
    total: get('Total pages'),
  };
}

const work = mkdtempSync(path.join(tmpdir(), 'vcv-simhost-md-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const cases: [string, GuestSpecInput][] = [
  ['512 MiB, 4-level, pages written in the file', { memoryMiB: 512, freePercent: 50, levels: 4, content: 'written' }],
  ['1 GiB, 5-level, generated content, tail struct pages as holes', { memoryMiB: 1024, freePercent: 30, levels: 5, content: 'generated', seed: 3 }],
  ['768 MiB, 90 % free, no huge pages', { memoryMiB: 768, freePercent: 90, thpPercent: 0, content: 'generated', freeTails: 'written', seed: 5 }],
];

describe.skipIf(missingCommands(['makedumpfile']).length > 0)('simulated guests against makedumpfile -d 31', () => {
  for (const [name, input] of cases) {
    it(name, async () => {
      const spec = normalizeSpec(input);
      const img = await ensureImage(spec, path.join(work, 'cache'));
      const intended = img.meta.intended;
      const ramPages = spec.ramBytes / 4096;
      expect(intended.free + intended.cache + intended.privateCache + intended.user + intended.zero + intended.remaining).toBe(ramPages);
      expect(intended.free).toBeGreaterThan(0);

      // Our introspection, straight from the simulated RAM.
      const mem = new SimGuestMemory(img);
      const k = await LinuxKernel.open(mem);
      expect(k.found.origin).toBe('note');
      const r = await k.classify({ dumpLevel: 31 });
      expect(r.anomalies).toEqual({ badBuddyOrder: 0, badCompoundOrder: 0 });
      const zero = await k.countZeroPages(r.excluded);
      expect({ ...r.counts, zero: zero.zeroPages }).toEqual({
        cache: intended.cache,
        privateCache: intended.privateCache,
        user: intended.user,
        free: intended.free,
        offline: 0,
        hwpoison: 0,
        zero: intended.zero,
      });
      const log = await k.printk();
      expect(log.records.some((x) => x.text === img.meta.panicLine)).toBe(true);

      // The same memory as an ELF vmcore, through makedumpfile.
      const ram = new Bitmap(mem.maxPfn).setRange(0, mem.maxPfn);
      const elf = path.join(work, `${img.meta.hash}.elf`);
      const w = await ElfWriter.create({ path: elf, maxPfn: mem.maxPfn, ram, dump: ram.clone(), notes: [...mem.notes] });
      const buf = Buffer.alloc(8 << 20);
      for (let a = 0; a < spec.ramBytes; a += buf.length) {
        await mem.read(a, buf, 0, buf.length);
        await w.writePages(a / 4096, buf);
      }
      await w.finish();
      await mem.close();
      const out = path.join(work, `${img.meta.hash}.kdump`);
      const stdout = execFileSync('makedumpfile', ['-d', '31', '--message-level', '31', elf, out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      const md = parseCounts(stdout);
      expect(md).toEqual({
        zero: intended.zero,
        cache: intended.cache,
        privateCache: intended.privateCache,
        user: intended.user,
        free: intended.free,
        hwpoison: 0,
        offline: 0,
        remaining: intended.remaining,
        total: ramPages,
      });
      const dmesg = path.join(work, `${img.meta.hash}.dmesg`);
      execFileSync('makedumpfile', ['--dump-dmesg', out, dmesg], { stdio: 'ignore' });
      expect(execFileSync('cat', [dmesg], { encoding: 'utf8' })).toContain(img.meta.panicLine);
      rmSync(elf, { force: true });
      rmSync(out, { force: true });
    });
  }
});
