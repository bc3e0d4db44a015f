/**
 * Chunk planning: guest memory is cut into chunks (aligned to the backend's growth granularity); each
 * chunk, once durably dumped, is handed over. Chunks that need little or no writing go first, so memory
 * reaches the recovery VM sooner.
 */
import type { PhysRange } from './memory.js';
import { PAGE_SIZE } from './memory.js';
import type { PfnBitmap } from './contracts.js';

export interface Chunk {
  /** Index in address order. */
  readonly index: number;
  /** Guest-physical range (∩ RAM): a chunk never spans a hole. */
  readonly range: PhysRange;
  readonly startPfn: number;
  readonly endPfn: number;
  /** Pages of the chunk in the dump set (what must be written before release). */
  readonly selectedPages: number;
}

export function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Chunk size actually used: the configured size rounded up to the backend's growth granularity. */
export function chunkBytesFor(configuredMiB: number, granularityBytes: number): number {
  const g = Math.max(PAGE_SIZE, granularityBytes || PAGE_SIZE);
  return roundUp(configuredMiB * 1024 * 1024, g);
}

/** Cut the RAM ranges at multiples of `chunkBytes` (in guest-physical address space). */
export function planChunks(ranges: readonly PhysRange[], dump: PfnBitmap, chunkBytes: number): Chunk[] {
  const chunks: Chunk[] = [];
  for (const r of ranges) {
    let start = r.start;
    while (start < r.end) {
      const end = Math.min(r.end, (Math.floor(start / chunkBytes) + 1) * chunkBytes);
      const startPfn = start / PAGE_SIZE;
      const endPfn = end / PAGE_SIZE;
      chunks.push({ index: chunks.length, range: { start, end }, startPfn, endPfn, selectedPages: dump.count(startPfn, Math.min(endPfn, dump.size)) });
      start = end;
    }
  }
  return chunks;
}

/** Cheapest first (fewest pages to write); ties in address order. */
export function orderCheapestFirst(chunks: readonly Chunk[]): Chunk[] {
  return [...chunks].sort((a, b) => a.selectedPages - b.selectedPages || a.index - b.index);
}
