/** The compression worker pool produces the same file as in-thread compression. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { KdumpReader } from '../src/index.js';
import { compressWorkerUrl } from '../src/kdump/pool.js';
import { pageSets, writeKdump } from './helpers/dumps.js';
import { libkdumpfileRead } from './helpers/oracle.js';
import { makeImage, PS } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
const MAXPFN = 3000;
const image = makeImage(MAXPFN, 61);
const { ram, dump } = pageSets(MAXPFN, 13);

beforeAll(() => {
  // The pool runs the compiled worker (dist/kdump/compress-worker.js); build it if this checkout has not.
  if (!compressWorkerUrl()) {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const r = spawnSync('npx', ['tsc', '-b', 'packages/dumpfmt'], { cwd: root, stdio: 'inherit' });
    expect(r.status).toBe(0);
  }
  expect(compressWorkerUrl()).toBeDefined();
});

describe.each([
  ['zlib', 3],
  ['lzo', 3],
  ['snappy', 3],
  ['snappy', 1],
  ['zlib', 1],
] as const)('%s with 2 workers, %i chunk(s) in flight', (compression, concurrency) => {
  it('writes the same bytes as in-thread compression, in any chunk order (transfer buffers are reused)', async () => {
    const a = join(dir, `w0-${compression}-${concurrency}.kdump`);
    const b = join(dir, `w2-${compression}-${concurrency}.kdump`);
    // 700-page chunks and a 200-page last chunk: reused transfer buffers are larger than the job
    const common = { compression, excludeZero: true, ram, dump, order: 5 as const, chunkPages: 700 };
    const w0 = await writeKdumpWith(a, 0, common);
    const w2 = await writeKdumpWith(b, 2, { ...common, concurrency });
    expect(w0).toBe(0);
    expect(w2).toBe(2);
    expect(readFileSync(b).equals(readFileSync(a))).toBe(true);
    const r = KdumpReader.openSync(b);
    for (const [pfn, page] of r.dumpedPages({ skipUnreadable: false })) expect(page.equals(image.subarray(pfn * PS, (pfn + 1) * PS))).toBe(true);
    r.close();
    const res = libkdumpfileRead(b, MAXPFN, b + '.lkd');
    expect(res.ok.filter((p) => dump.get(p)).length).toBe(dump.count());
  });
});

describe.each(['zlib', 'lzo'] as const)('%s with 2 workers reading the pages in shared memory', (compression) => {
  it('writes the same bytes as in-thread compression of an ordinary copy of the pages', async () => {
    const a = join(dir, `s0-${compression}.kdump`);
    const b = join(dir, `s2-${compression}.kdump`);
    const shared = Buffer.from(new SharedArrayBuffer(image.length));
    image.copy(shared);
    const common = { compression, excludeZero: true, ram, dump, order: 5 as const, chunkPages: 700 };
    expect(await writeKdumpWith(a, 0, common)).toBe(0);
    expect(await writeKdumpWith(b, 2, { ...common, concurrency: 3 }, shared)).toBe(2);
    expect(readFileSync(b).equals(readFileSync(a))).toBe(true);
    const res = libkdumpfileRead(b, MAXPFN, b + '.lkd');
    expect(res.ok.filter((p) => dump.get(p)).length).toBe(dump.count());
  });
});

async function writeKdumpWith(path: string, workers: number, o: Parameters<typeof writeKdump>[2], from: Buffer = image): Promise<number> {
  const w = await writeKdump(path, from, { ...o, workers });
  const n = w.workers;
  const s = await w.finish();
  expect(s.complete).toBe(true);
  return n;
}

describe('a dying worker pool', () => {
  it('falls back to in-thread compression without losing pages', async () => {
    const path = join(dir, 'dying.kdump');
    const { KdumpWriter } = await import('../src/index.js');
    const w = await KdumpWriter.create({
      path,
      maxPfn: MAXPFN,
      ram,
      dump,
      compression: 'lzo',
      excludeZero: true,
      notes: [],
      utsname: { machine: 'x86_64' },
      physBase: 0n,
      dumpLevel: 1,
      nrCpus: 1,
      workers: 2,
    });
    expect(w.workers).toBe(2);
    await w.writePages(0, image.subarray(0, 1000 * PS));
    // kill the workers behind the writer's back
    const pool = (w as unknown as { pool: { slots: { worker: { terminate(): Promise<number> } }[] } }).pool;
    await Promise.all(pool.slots.map((s) => s.worker.terminate()));
    await w.writePages(1000, image.subarray(1000 * PS));
    expect(w.workers).toBe(0);
    expect((await w.finish()).complete).toBe(true);
    const r = KdumpReader.openSync(path);
    for (const [pfn, page] of r.dumpedPages({ skipUnreadable: false })) expect(page.equals(image.subarray(pfn * PS, (pfn + 1) * PS))).toBe(true);
    r.close();
  });
});
