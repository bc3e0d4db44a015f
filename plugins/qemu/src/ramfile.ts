/**
 * The crashed VM's RAM file (QEMU memory-backend-file): guest-physical ranges → file ranges (flat, or
 * QEMU `pc` with the PCI hole), punching holes to give memory back, and measuring what a file holds.
 * Every figure is measured from `stat` (allocated 512-byte blocks), never assumed.
 */
import { promises as fsp } from 'node:fs';
import { rawSegments, resolveLayout } from '@vicover/image';
import type { PhysRange } from '@vicover/core';
import { run } from '@vicover/hostutil';

export type Layout = 'flat' | 'pc' | 'auto';

export interface FileRange {
  readonly offset: number;
  readonly length: number;
}

/** File byte ranges holding the guest-physical range `r` of a RAM file of `size` bytes. */
export function fileRangesOf(r: PhysRange, size: number, layout: Layout): FileRange[] {
  const out: FileRange[] = [];
  for (const s of rawSegments(size, resolveLayout(size, layout))) {
    const a = Math.max(r.start, s.gpa);
    const b = Math.min(r.end, s.gpa + s.fileBytes);
    if (a < b) out.push({ offset: s.fileOffset + (a - s.gpa), length: b - a });
  }
  return out;
}

/** Bytes the file holds in memory/disk (allocated blocks × 512); 0 when it does not exist. */
export async function allocatedBytes(file: string): Promise<number> {
  try {
    return (await fsp.stat(file)).blocks * 512;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
}

/** Punch holes over the file ranges; returns the bytes freed as `stat` sees them. */
export async function punchHoles(file: string, ranges: readonly FileRange[], opts: { timeoutMs?: number } = {}): Promise<number> {
  const before = await allocatedBytes(file);
  for (const r of ranges) {
    if (r.length <= 0) continue;
    await run('fallocate', ['--punch-hole', '--offset', String(r.offset), '--length', String(r.length), file], { timeoutMs: opts.timeoutMs ?? 60_000 });
  }
  const after = await allocatedBytes(file);
  return Math.max(0, before - after);
}
