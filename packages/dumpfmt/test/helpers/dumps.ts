/** Build dumps from a known memory image for tests. */
import { Bitmap, ElfWriter, KdumpWriter, prstatusNote, vmcoreinfoNote, type Compression, type ElfNote } from '../../src/index.js';
import type { DumpFs } from '../../src/fsio.js';
import { PS, rng } from './pages.js';

export const VMCOREINFO_TEXT = 'OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82012345\nNUMBER(phys_base)=0\nKERNELOFFSET=0\n';

export function testNotes(cpus = 2): ElfNote[] {
  const notes: ElfNote[] = [];
  for (let c = 0; c < cpus; c++) {
    notes.push(prstatusNote(c, { rip: 0xffffffff81000000n + BigInt(c), rsp: 0xffffc90000001000n + BigInt(c), rax: 42n, r15: 15n, gs: 0x2bn }));
  }
  notes.push(vmcoreinfoNote(VMCOREINFO_TEXT));
  return notes;
}

/** RAM = everything except a hole; dump = RAM minus some excluded runs (a sparse page set). */
export function pageSets(maxPfn: number, seed = 5, opts: { hole?: [number, number]; excludeFraction?: number } = {}): { ram: Bitmap; dump: Bitmap } {
  const ram = new Bitmap(maxPfn).setRange(0, maxPfn);
  const hole = opts.hole ?? [Math.floor(maxPfn * 0.4), Math.floor(maxPfn * 0.45)];
  ram.clearRange(hole[0], hole[1]);
  const dump = ram.clone();
  const r = rng(seed);
  const frac = opts.excludeFraction ?? 0.3;
  // exclude runs of random length
  let p = 0;
  while (p < maxPfn) {
    const len = 1 + Math.floor(r() * 40);
    if (r() < frac) dump.clearRange(p, Math.min(maxPfn, p + len));
    p += len;
  }
  return { ram, dump };
}

export function chunkOrder(maxPfn: number, chunkPages: number, seed: number | 'inorder'): [number, number][] {
  const chunks: [number, number][] = [];
  for (let s = 0; s < maxPfn; s += chunkPages) chunks.push([s, Math.min(maxPfn, s + chunkPages)]);
  if (seed !== 'inorder') {
    const r = rng(seed);
    for (let i = chunks.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [chunks[i], chunks[j]] = [chunks[j]!, chunks[i]!];
    }
  }
  return chunks;
}

export interface WriteOpts {
  compression: Compression;
  excludeZero: boolean;
  chunkPages?: number;
  order?: number | 'inorder';
  fs?: DumpFs;
  ram: Bitmap;
  dump: Bitmap;
  notes?: ElfNote[];
  /** Keep up to this many writePages calls in flight. */
  concurrency?: number;
  /** Compression threads (KdumpWriter option); default 0 in tests so files are deterministic to compare. */
  workers?: number;
}

export async function writeKdump(path: string, image: Buffer, o: WriteOpts) {
  const maxPfn = image.length / PS;
  const w = await KdumpWriter.create({
    path,
    fs: o.fs,
    maxPfn,
    ram: o.ram,
    dump: o.dump,
    compression: o.compression,
    excludeZero: o.excludeZero,
    notes: o.notes ?? testNotes(),
    utsname: { machine: 'x86_64', nodename: 'guest1', release: '6.1.0-test', version: '#1 SMP' },
    physBase: 0x1000000n,
    dumpLevel: o.excludeZero ? 1 : 0,
    nrCpus: 2,
    timestamp: new Date('2024-05-01T12:00:00Z'),
    workers: o.workers ?? 0,
  });
  const inflight: Promise<unknown>[] = [];
  for (const [s, e] of chunkOrder(maxPfn, o.chunkPages ?? 97, o.order ?? 11)) {
    inflight.push(w.writePages(s, image.subarray(s * PS, e * PS)));
    if (inflight.length >= (o.concurrency ?? 1)) await inflight.shift();
  }
  await Promise.all(inflight);
  return w;
}

export async function writeElf(path: string, image: Buffer, o: Omit<WriteOpts, 'compression'> & { mergeGapPages?: number }) {
  const maxPfn = image.length / PS;
  const w = await ElfWriter.create({
    path,
    fs: o.fs,
    maxPfn,
    ram: o.ram,
    dump: o.dump,
    notes: o.notes ?? testNotes(),
    excludeZero: o.excludeZero,
    mergeGapPages: o.mergeGapPages,
  });
  for (const [s, e] of chunkOrder(maxPfn, o.chunkPages ?? 97, o.order ?? 11)) await w.writePages(s, image.subarray(s * PS, e * PS));
  return w;
}
