/**
 * Guest memory as the core sees it: guest-physical RAM ranges that can be read with pread-like calls.
 * Backends (a hypervisor's RAM file, foreign mappings) and offline images (raw RAM files, ELF or kdump
 * vmcores) implement this; the guest-OS plugins and the dump writer read through it.
 *
 * Addresses are plain numbers: guest-physical addresses on the architectures we support stay below
 * 2^52 (MAX_PHYSMEM_BITS ≤ 52), well inside Number.MAX_SAFE_INTEGER. Kernel *virtual* addresses do not,
 * and are bigint wherever they appear.
 */

/** An ELF note as carried in a vmcore's PT_NOTE (structurally the same as @vicover/dumpfmt's ElfNote). */
export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly desc: Buffer;
}

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

/** A guest-physical byte range [start, end), page aligned. */
export interface PhysRange {
  readonly start: number;
  readonly end: number;
}

export interface MemorySource {
  /** Human-readable origin, e.g. `raw /dev/shm/web1.ram (layout pc)` — for logs and reports. */
  readonly description: string;
  /** Guest-physical RAM ranges, sorted, non-overlapping, page aligned. */
  readonly ranges: readonly PhysRange[];
  /** One past the highest RAM pfn (end of the last range / PAGE_SIZE). */
  readonly maxPfn: number;
  /**
   * Read `length` bytes of guest-physical memory at `gpa` into `buf[offset…]`.
   * Throws VcvError VCV_ERR_MEMORY_RANGE when any byte lies outside `ranges` (callers that walk
   * untrusted guest pointers rely on this instead of reading garbage). Bytes that are inside a range
   * but not backed by data (e.g. an ELF segment's memsz > filesz, a punched hole) read as zero.
   */
  read(gpa: number, buf: Uint8Array, offset: number, length: number): Promise<void>;
  /** Same, synchronous: for small random reads (page-table walks, kernel structures). */
  readSync(gpa: number, buf: Uint8Array, offset: number, length: number): void;
  /**
   * Pages whose content the source holds, when that is not all of `ranges` (a filtered dump given as
   * input: makedumpfile's -d 31 output). Reading a page outside it fails; dumps never include it.
   */
  readonly present?: { get(pfn: number): boolean; count(start?: number, end?: number): number; runs(start?: number, end?: number): Iterable<[number, number]> };
  /**
   * Optional fast path for scans: the guest-physical addresses in [start, end) (page aligned, inside
   * one range) where the bytes `needle` start at one of `pageOffsets` of a page, ascending, at most
   * `max` of them (`truncated` when there were more). A source that can look at pages where they are
   * — without copying them out, e.g. through a helper process that maps them — implements it; callers
   * read() otherwise. Released pages are never hits.
   */
  findInPages?(start: number, end: number, needle: Uint8Array, pageOffsets: readonly number[], max: number): Promise<{ hits: number[]; truncated: boolean }>;
  /**
   * The one local file all page data is read from, when it can be copied from there directly (an image
   * file, a RAM file): the dump writer may then copy pages inside the kernel instead of reading them.
   */
  readonly backingFile?: string;
  /**
   * Where [gpa, gpa+length) lies in `backingFile`: (file position, bytes) pieces in address order;
   * position -1 for bytes that read as zero. Throws VCV_ERR_MEMORY_RANGE like read(). Only with backingFile.
   */
  fileExtents?(gpa: number, length: number): [number, number][];
  /** ELF notes the source carries (a vmcore's PT_NOTE: CPU state, guest-OS notes …); empty for raw RAM. */
  readonly notes: readonly ElfNote[];
  /** Release file descriptors. Idempotent. */
  close(): Promise<void>;
}

/** True when [gpa, gpa+length) lies inside one of the ranges. */
export function inRanges(ranges: readonly PhysRange[], gpa: number, length: number): boolean {
  // Binary search: ranges are sorted.
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = ranges[mid]!;
    if (gpa < r.start) hi = mid - 1;
    else if (gpa >= r.end) lo = mid + 1;
    else return gpa + length <= r.end;
  }
  return false;
}
