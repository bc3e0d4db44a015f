// Sanity checks of the crashed-guest factory: builds (or reuses) the small4 image set and checks
// that the artefacts agree with each other. VICOVER_GUEST_SPECS=small4,mixed5 checks more specs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
// @ts-ignore — plain ESM helpers without type declarations
import { ensureImage, readMeta, SPECS } from './images.mjs';
// @ts-ignore
import { parseMakedumpfileReport } from './make-image.mjs';
// @ts-ignore
import { parseVmcoreinfo } from './vmcoreinfo.mjs';
import { missingCommands } from '../tools/commands.mjs';

const PANIC = 'Kernel panic - not syncing: sysrq triggered crash';

const tools = ['qemu-system-x86_64', 'qemu-img', 'makedumpfile', 'busybox', 'gcc', 'mke2fs', 'apt-get'];
const missing = missingCommands(tools);
const specs = (process.env.VICOVER_GUEST_SPECS ?? 'small4').split(',').filter(Boolean);

describe('parseMakedumpfileReport', () => {
  it('reads the hex page counts', () => {
    const r = parseMakedumpfileReport(
      [
        'Original pages  : 0x0000000000030000',
        '  Excluded pages   : 0x000000000002bb2b',
        '    Pages filled with zero  : 0x0000000000001907',
        '    Free pages              : 0x00000000000222c1',
        '  Remaining pages  : 0x00000000000044d5',
        'Memory Hole     : 0x0000000000000000',
        'Total pages     : 0x0000000000030000',
      ].join('\n'),
    );
    expect(r).toMatchObject({
      originalPages: 0x30000,
      excludedPages: 0x2bb2b,
      zeroPages: 0x1907,
      freePages: 0x222c1,
      remainingPages: 0x44d5,
      memoryHolePages: 0,
      totalPages: 0x30000,
    });
  });
});

for (const name of specs) {
  describe.skipIf(missing.length > 0)(`crashed guest image ${name}`, () => {
    let dir: string;
    let meta: any;
    const spec = SPECS[name];

    beforeAll(async () => {
      dir = await ensureImage(name);
      meta = await readMeta(dir);
    }, 900_000);

    it('has every artefact, private permissions', () => {
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
      for (const f of ['ram.img', 'vmcore.elf', 'vmcore.fixed.elf', 'vmcoreinfo.txt', 'md31.kdump', 'makedumpfile.json', 'dmesg.txt', 'serial.log']) {
        const st = fs.statSync(path.join(dir, f));
        expect(st.size, f).toBeGreaterThan(0);
        expect(st.mode & 0o777, f).toBe(0o600);
      }
    });

    it('RAM file size and layout match the spec and QEMU', () => {
      const size = fs.statSync(path.join(dir, 'ram.img')).size;
      expect(size).toBe(spec.memMiB * 1024 * 1024);
      expect(meta.ram.size).toBe(size);
      expect(meta.ram.layout).toBe(size >= 0xe0000000 ? 'pc' : 'flat');
      expect(meta.ram.mtreeMatchesLayout).toBe(true);
      expect(meta.layoutCheck.mismatches).toBe(0);
      expect(meta.layoutCheck.nonZeroSampled).toBeGreaterThan(100);
      expect(meta.layoutCheck.ramBytesCoveredByElf).toBe(size);
    });

    it('readelf -l reads the QEMU ELF', () => {
      const out = execFileSync('readelf', ['-l', '-W', path.join(dir, 'vmcore.elf')], { encoding: 'utf8' });
      expect(out).toContain('Elf file type is CORE');
      const loads = out.split('\n').filter((l) => /^\s+LOAD\s/.test(l));
      expect(loads.length).toBe(meta.elf.loads.length);
      expect(out).toMatch(/^\s+NOTE\s/m);
    });

    it('VMCOREINFO matches the kernel and the paging mode', () => {
      const vi = parseVmcoreinfo(fs.readFileSync(path.join(dir, 'vmcoreinfo.txt'), 'latin1'));
      expect(vi.OSRELEASE).toBe(meta.kernel.version);
      expect(vi['NUMBER(pgtable_l5_enabled)']).toBe(spec.cpu === 'max' ? '1' : '0');
      expect(meta.pagingLevels).toBe(spec.cpu === 'max' ? 5 : 4);
      expect(meta.vmcoreinfo.elfHasNote).toBe(spec.vmcoreinfo);
      expect(meta.vmcoreinfo.ramScanDistinct).toBe(1);
      if (spec.vmcoreinfo) expect(meta.vmcoreinfo.ramScanMatchesElfNote).toBe(true);
    });

    it('makedumpfile counts parse and add up', () => {
      const md = JSON.parse(fs.readFileSync(path.join(dir, 'makedumpfile.json'), 'utf8'));
      for (const level of ['d31', 'd16']) {
        const c = md[level];
        const classes = c.zeroPages + c.nonPrivateCachePages + c.privateCachePages + c.userPages + c.freePages + c.hwpoisonPages + c.offlinePages;
        expect(classes, level).toBe(c.excludedPages);
        expect(c.excludedPages + c.remainingPages, level).toBe(c.originalPages);
        expect(c.originalPages + c.memoryHolePages, level).toBe(c.totalPages);
      }
      // The ELF also carries QEMU's BIOS ROM segment (see docs/guests.md), hence ≥.
      expect(md.d31.originalPages).toBeGreaterThanOrEqual(spec.memMiB * 256);
      expect(md.d16.freePages).toBe(md.d31.freePages);
      expect(md.d16.excludedPages).toBe(md.d16.freePages);
      // A realistic mix: every class is present.
      for (const k of ['zeroPages', 'nonPrivateCachePages', 'privateCachePages', 'userPages', 'freePages']) {
        expect(md.d31[k], k).toBeGreaterThan(0);
      }
      const anonMiB = Number(/anon:(\d+)/.exec(spec.load)?.[1] ?? 0);
      expect(md.d31.userPages).toBeGreaterThanOrEqual(anonMiB * 256);
      // The raw report is kept next to the parsed one.
      const raw = fs.readFileSync(path.join(dir, 'makedumpfile-d31.stdout'), 'utf8');
      expect(parseMakedumpfileReport(raw).freePages).toBe(md.d31.freePages);
    });

    it('the kernel log in the kdump file shows the panic', () => {
      expect(fs.readFileSync(path.join(dir, 'dmesg.txt'), 'utf8')).toContain(PANIC);
      expect(meta.panic.dmesgHasPanicLine).toBe(true);
      expect(meta.panic.event.action).toBe('pause');
    });

    it('recorded sane timings', () => {
      const t = meta.timings;
      expect(t.bootToReadySeconds).toBeGreaterThan(0);
      expect(t.crashToEventSeconds).toBeGreaterThan(0);
      expect(t.crashToEventSeconds).toBeLessThan(10);
      expect(t.dumpGuestMemorySeconds).toBeGreaterThan(0);
    });
  });
}

describe.skipIf(missing.length > 0)('no leftovers', () => {
  it('leaves no RAM files in /dev/shm', () => {
    const left = fs.readdirSync('/dev/shm').filter((f) => f.startsWith('vcvguest-') && f.includes(`-${process.pid}-`));
    expect(left).toEqual([]);
  });
});
