/**
 * Raw RAM files: QEMU's `memory-backend-file` (the file *is* guest RAM) or any plain physical-memory
 * snapshot.
 *
 * Layouts:
 * - `flat`: file offset = guest-physical address.
 * - `pc`:   QEMU's `pc` machine. With ≥ 3.5 GiB of RAM QEMU puts 3 GiB below 4 GiB and the rest from
 *           4 GiB on (file [0,3G) → GPA [0,3G), file [3G,…) → GPA [4G,…)); with less, the whole RAM
 *           sits below 4 GiB and `pc` is the same as `flat` (QEMU `pc_init1`: lowmem is 3 GiB only when
 *           ram_size ≥ 0xe0000000).
 * - `auto`: `pc` when the file is ≥ 3.5 GiB, else `flat` (which are the same thing below 3.5 GiB).
 */
import type { MemorySource } from '@vicover/core';
import { VcvError } from '@vicover/errors';
import { PAGE_SIZE, PositionalFile, SegmentedFileSource, type Segment } from './segments.js';

export type RawLayout = 'flat' | 'pc' | 'auto';

export const GIB = 1024 * 1024 * 1024;
/** QEMU pc: RAM at or above this size is split around the PCI hole. */
export const PC_SPLIT_THRESHOLD = 3.5 * GIB;
/** QEMU pc: RAM below 4 GiB when split. */
export const PC_LOWMEM = 3 * GIB;
export const FOUR_GIB = 4 * GIB;

export interface RawImageOptions {
  readonly layout?: RawLayout;
}

/** The guest-physical segments of a raw RAM file of `size` bytes in `layout`. */
export function rawSegments(size: number, layout: RawLayout, what = 'raw image'): Segment[] {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new VcvError('VCV_ERR_IMAGE_LAYOUT', `${what} is empty`, { size });
  }
  if (size % PAGE_SIZE !== 0) {
    throw new VcvError('VCV_ERR_IMAGE_LAYOUT', `${what}: size ${size} is not a multiple of the page size ${PAGE_SIZE}`, {
      size,
    });
  }
  if (layout !== 'flat' && layout !== 'pc' && layout !== 'auto') {
    throw new VcvError('VCV_ERR_IMAGE_LAYOUT', `${what}: unknown layout ${String(layout)} (flat, pc or auto)`, {
      layout,
    });
  }
  if (layout === 'flat' || size < PC_SPLIT_THRESHOLD) {
    return [{ gpa: 0, memBytes: size, fileOffset: 0, fileBytes: size }];
  }
  return [
    { gpa: 0, memBytes: PC_LOWMEM, fileOffset: 0, fileBytes: PC_LOWMEM },
    { gpa: FOUR_GIB, memBytes: size - PC_LOWMEM, fileOffset: PC_LOWMEM, fileBytes: size - PC_LOWMEM },
  ];
}

/** The layout `auto` resolves to for a file of `size` bytes. */
export function resolveLayout(size: number, layout: RawLayout): 'flat' | 'pc' {
  if (layout === 'auto') return size >= PC_SPLIT_THRESHOLD ? 'pc' : 'flat';
  return layout;
}

/** Open a raw RAM file. Reads are positional; the file is never loaded. */
export function openRawImage(path: string, opts: RawImageOptions = {}): MemorySource {
  const layout = opts.layout ?? 'auto';
  const file = PositionalFile.open(path);
  try {
    const size = file.size;
    const resolved = resolveLayout(size, layout);
    const segments = rawSegments(size, resolved, `raw image ${path}`);
    return new SegmentedFileSource(`raw ${path} (layout ${resolved})`, file, segments);
  } catch (e) {
    void file.close();
    throw e;
  }
}
