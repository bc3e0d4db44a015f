/**
 * A real crashed Linux guest (the shared `small4` image set: Debian's 6.1 kernel under QEMU/TCG,
 * built or reused by test/guest/images.mjs — see docs/guests.md). Our files must satisfy the tools
 * that understand the kernel: makedumpfile --dump-dmesg and -d 31 on our kdump/ELF give exactly what
 * they give on QEMU's own dump; libkdumpfile walks the guest page tables through our file; our kdump
 * reader reads makedumpfile's own output.
 */
import { openSync, readFileSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Bitmap, ElfCoreReader, ElfWriter, KdumpReader, KdumpWriter, type Compression } from '../src/index.js';
import { run, runPy } from './helpers/oracle.js';
import { PS } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';
// @ts-ignore — plain ESM helper without type declarations (owned by the guest-image factory)
import { ensureImage, readMeta } from '../../../test/guest/images.mjs';
import { missingCommands } from '../../../test/tools/commands.mjs';

const tools = ['qemu-system-x86_64', 'qemu-img', 'makedumpfile', 'busybox', 'gcc', 'mke2fs', 'apt-get'];
const missing = missingCommands(tools);

interface Meta {
  ram: { file: string; ranges: { fileOffset: number; gpa: number; size: number }[] };
}

/** makedumpfile's page report → numbers. */
function report(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [, k, v] of text.matchAll(/^\s*([A-Za-z][A-Za-z -]+?)\s*: (0x[0-9a-f]+)\s*$/gm)) out[k!.trim()] = Number(v);
  const wb = /Write bytes\s*: (\d+)/.exec(text);
  if (wb) out['Write bytes'] = Number(wb[1]);
  return out;
}

describe.skipIf(missing.length > 0)(`a real crashed guest (small4)${missing.length ? ` — missing ${missing.join(', ')}` : ''}`, () => {
  const out = tempDir();
  let dir = '';
  let meta: Meta;
  let maxPfn = 0;
  let ram: Bitmap;
  let dmesg: string;
  let notes: ElfCoreReader['notes'];
  let vmcoreinfo: string;

  /** Feed the guest RAM (ram.img, mapped by meta.ram.ranges) to a writer in 64 MiB chunks, last range first. */
  async function feed(w: { writePages(s: number, d: Buffer): Promise<unknown> }) {
    const fd = openSync(join(dir, meta.ram.file), 'r');
    const buf = Buffer.alloc(64 << 20);
    for (const r of [...meta.ram.ranges].reverse()) {
      for (let off = 0; off < r.size; off += buf.length) {
        const n = Math.min(buf.length, r.size - off);
        readSync(fd, buf, 0, n, r.fileOffset + off);
        await w.writePages((r.gpa + off) / PS, buf.subarray(0, n));
      }
    }
    closeSync(fd);
  }

  async function kdump(name: string, compression: Compression) {
    const path = join(out, name);
    const w = await KdumpWriter.create({
      path,
      maxPfn,
      ram,
      dump: ram,
      compression,
      excludeZero: true,
      notes,
      utsname: { machine: 'x86_64', release: /OSRELEASE=(.*)/.exec(vmcoreinfo)![1]! },
      physBase: BigInt(/NUMBER\(phys_base\)=(-?\d+)/.exec(vmcoreinfo)![1]!),
      dumpLevel: 1,
      nrCpus: 2,
    });
    await feed(w);
    expect((await w.finish()).complete).toBe(true);
    return path;
  }

  beforeAll(async () => {
    dir = await ensureImage('small4');
    meta = (await readMeta(dir)) as Meta;
    maxPfn = Math.max(...meta.ram.ranges.map((r) => (r.gpa + r.size) / PS));
    ram = new Bitmap(maxPfn);
    for (const r of meta.ram.ranges) ram.setRange(r.gpa / PS, (r.gpa + r.size) / PS);
    dmesg = readFileSync(join(dir, 'dmesg.txt'), 'utf8');
    // CPU notes and VMCOREINFO from QEMU's ELF dump of the same crash (read with our ELF reader)
    const e = ElfCoreReader.openSync(join(dir, 'vmcore.elf'));
    notes = e.notes;
    vmcoreinfo = e.vmcoreinfo!;
    e.close();
    expect(vmcoreinfo).toMatch(/^OSRELEASE=6\.1\./);
  });

  it("QEMU's ELF dump (e_ehsize 8) and the raw RAM file agree page for page", () => {
    const e = ElfCoreReader.openSync(join(dir, 'vmcore.elf'));
    expect(e.warnings.join()).toMatch(/e_ehsize/);
    const fd = openSync(join(dir, meta.ram.file), 'r');
    const a = Buffer.alloc(PS);
    for (const r of meta.ram.ranges) {
      for (let off = 0; off < r.size; off += 17 * PS) {
        readSync(fd, a, 0, PS, r.fileOffset + off);
        expect(e.readPage((r.gpa + off) / PS).equals(a), `gpa ${r.gpa + off}`).toBe(true);
      }
    }
    closeSync(fd);
    e.close();
  });

  it("our kdump reader reads makedumpfile's own -d 31 output: every dumped page equals the guest RAM", () => {
    const k = KdumpReader.openSync(join(dir, 'md31.kdump'));
    expect(k.dumpLevel).toBe(31);
    expect(k.vmcoreinfo).toBe(vmcoreinfo);
    const fd = openSync(join(dir, meta.ram.file), 'r');
    const a = Buffer.alloc(PS);
    let n = 0;
    for (const [pfn, page] of k.dumpedPages({ skipUnreadable: false })) {
      const r = meta.ram.ranges.find((x) => pfn * PS >= x.gpa && pfn * PS < x.gpa + x.size)!;
      readSync(fd, a, 0, PS, r.fileOffset + pfn * PS - r.gpa);
      if (!page.equals(a)) throw new Error(`pfn ${pfn} differs`);
      n++;
    }
    closeSync(fd);
    const st = k.stats();
    expect(n).toBe(st.dumpable);
    expect(st.lost).toBe(0);
    k.close();
  });

  describe.each(['zlib', 'lzo'] as Compression[])('our %s kdump of the guest', (compression) => {
    let path = '';
    it('is written', async () => {
      path = await kdump(`guest-${compression}.kdump`, compression);
    });

    it('makedumpfile --dump-dmesg prints the same kernel log as from QEMU’s dump', () => {
      const r = run('makedumpfile', ['--dump-dmesg', path, `${path}.dmesg`]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(readFileSync(`${path}.dmesg`, 'utf8')).toBe(dmesg);
      expect(dmesg).toContain('Kernel panic - not syncing: sysrq triggered crash');
    });

    it('makedumpfile -d 31 re-filters it to the same page counts and bytes as from QEMU’s dump', () => {
      const r = run('makedumpfile', ['-d', '31', '--message-level', '31', path, `${path}.d31`]);
      expect(r.status, r.stdout.slice(-2000) + r.stderr).toBe(0);
      const ours = report(r.stdout + r.stderr);
      const theirs = report(readFileSync(join(dir, 'makedumpfile-d31.stdout'), 'utf8') + readFileSync(join(dir, 'makedumpfile-d31.stderr'), 'utf8'));
      for (const k of ['Excluded pages', 'Pages filled with zero', 'Non-private cache pages', 'Private cache pages', 'User process data pages', 'Free pages', 'Remaining pages', 'Total pages', 'Write bytes']) {
        expect(ours[k], k).toBeDefined();
        expect(ours[k], k).toBe(theirs[k]);
      }
    });

    it('libkdumpfile walks the guest page tables through it (init_uts_ns by kernel virtual address)', () => {
      const r = runPy(
        String.raw`
import kdumpfile, re, sys
k = kdumpfile.kdumpfile(sys.argv[1])
k.attr['addrxlat.ostype'] = 'linux'   # libkdumpfile 0.5 does not guess the OS by itself
vi = bytes(k.attr['linux.vmcoreinfo.raw']).decode()
a = int(re.search(r'SYMBOL\(init_uts_ns\)=([0-9a-f]+)', vi).group(1), 16)
b = k.read(kdumpfile.KDUMP_KVADDR, a, 390)
print('|'.join(bytes(b[i*65:(i+1)*65]).split(b'\0')[0].decode() for i in range(6)))
print(k.attr['cpu.number'])
`,
        [path],
      );
      expect(r.status, r.stderr).toBe(0);
      const [uts, cpus] = r.stdout.toString().trim().split('\n');
      expect(uts).toMatch(/^Linux\|[^|]*\|6\.1\.0-\d+-amd64\|#1 SMP [^|]*\|x86_64\|/);
      expect(cpus).toBe('2');
    });
  });

  it('our ELF vmcore of the guest: makedumpfile --dump-dmesg prints the same kernel log', async () => {
    const path = join(out, 'guest.elf');
    const w = await ElfWriter.create({ path, maxPfn, ram, dump: ram, notes });
    await feed(w);
    expect((await w.finish()).complete).toBe(true);
    const r = run('makedumpfile', ['--dump-dmesg', path, `${path}.dmesg`]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(`${path}.dmesg`, 'utf8')).toBe(dmesg);
  });
});
