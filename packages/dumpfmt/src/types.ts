import type { Compression } from './codec/index.js';

/** What one writePages() call did. */
export interface ChunkResult {
  /** Dumpable pages in the chunk that were written (zero pages included). */
  pages: number;
  /** Of those, all-zero pages (kdump: shared descriptor; ELF: left as a hole). */
  zeroPages: number;
  /** Bytes written to the file for this chunk (data + descriptors). */
  bytesWritten: number;
}

export interface WriterSummary {
  path: string;
  format: 'kdump' | 'elf';
  /** True when every dumpable page was written and the incomplete flag was cleared. */
  complete: boolean;
  /** Pages selected for the dump (kdump: 2nd bitmap popcount; ELF: dump bitmap popcount). */
  dumpable: number;
  pagesWritten: number;
  zeroPages: number;
  /** File size in bytes (ELF: apparent size; zero pages are holes). */
  fileBytes: number;
  compression: Compression;
  /** Set by abort(). */
  abortReason?: string;
}
