import type { Compression } from './codec/index.js';
import type { ElfNote } from './notes.js';

export type DumpFormat = 'kdump' | 'kdump-flattened' | 'elf';

/** What every dump reader offers (openDump() returns one). Reads are synchronous. */
export interface DumpReader {
  readonly path: string;
  readonly format: DumpFormat;
  readonly pageSize: number;
  /** One past the highest pfn the dump describes. */
  readonly maxPfn: number;
  /** Page codec ('none' for ELF). */
  readonly compression: Compression;
  /** The writer marked the dump incomplete (kdump status 0x8, ELF e_flags 0x1). */
  readonly incomplete: boolean;
  readonly notes: ElfNote[];
  /** The VMCOREINFO note's text, if the dump has one. */
  readonly vmcoreinfo: string | undefined;
  /** Number of pages in the dump (kdump: dumpable pages incl. zero pages; ELF: pages covered by PT_LOADs). */
  readonly pages: number;
  /** Recoverable oddities found while opening (with `strict`, the first one is an error instead). */
  readonly warnings: readonly string[];
  isDumped(pfn: number): boolean;
  /** Runs of dumped pfns, [start, end), ascending. */
  dumpedRuns(): Iterable<[number, number]>;
  /** One page; VCV_ERR_PAGE_NOT_DUMPED / VCV_ERR_PAGE_CORRUPT when it cannot be read. */
  readPage(pfn: number): Buffer;
  /**
   * Every dumped page in pfn order as [pfn, data]. Pages that cannot be read (lost, cut off, corrupt)
   * are skipped when `skipUnreadable` (default), else the error is thrown.
   */
  dumpedPages(opts?: { skipUnreadable?: boolean }): Generator<[number, Buffer]>;
  /** Guest-physical read; every byte must be dumped. */
  readPhys(addr: number | bigint, buf: Uint8Array, off?: number, len?: number): void;
  close(): void;
}

export interface ReaderOptions {
  /** Turn the first warning (recoverable oddity) into a VCV_ERR_FORMAT_INVALID error. */
  strict?: boolean;
}

/** Shared implementation of DumpReader.dumpedPages. */
export function* iterateDumpedPages(r: DumpReader, skipUnreadable: boolean): Generator<[number, Buffer]> {
  for (const [s, e] of r.dumpedRuns()) {
    for (let p = s; p < e; p++) {
      let page: Buffer;
      try {
        page = r.readPage(p);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (skipUnreadable && (code === 'VCV_ERR_PAGE_NOT_DUMPED' || code === 'VCV_ERR_PAGE_CORRUPT')) continue;
        throw err;
      }
      yield [p, page];
    }
  }
}
