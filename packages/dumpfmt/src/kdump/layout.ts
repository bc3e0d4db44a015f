/**
 * Where everything goes in a kdump-compressed file we write. Fixed once the page set is known:
 *
 *   0                       disk_dump_header (block 0)
 *   bs                      kdump_sub_header (104 B), then the ELF notes blob (sub_hdr_size blocks)
 *   (1+sub_hdr_size)·bs     1st bitmap (RAM), bitmapBytes, block aligned
 *   … + bitmapBytes         2nd bitmap (dumpable), bitmapBytes
 *   descOffset              page_desc × numDumpable (24 B each, pfn order)
 *   dataStart               data area, block aligned (makedumpfile does not align; readers don't care,
 *                           aligned data keeps the door open for O_DIRECT). With zero-page elision the
 *                           first block of the data area is the shared zero page.
 */
import { align } from '../binary.js';
import type { ElfNote } from '../notes.js';
import { encodeNotes, VMCOREINFO_NOTE_NAME } from '../notes.js';
import { pad4 } from '../binary.js';
import { KDUMP_SUB_HEADER_SIZE } from './subheader.js';
import { PAGE_DESC_SIZE } from './pagedesc.js';

export interface KdumpLayout {
  pageSize: number;
  maxPfn: number;
  numDumpable: number;
  subHdrBlocks: number;
  noteOffset: number;
  noteSize: number;
  vmcoreinfoOffset: number;
  vmcoreinfoSize: number;
  bitmapOffset: number;
  /** Bytes of one bitmap (block aligned). */
  bitmapBytes: number;
  descOffset: number;
  dataStart: number;
  /** File offset of the shared zero page, or -1 without zero-page elision. */
  zeroPageOffset: number;
}

export function computeKdumpLayout(p: { pageSize: number; maxPfn: number; numDumpable: number; notes: readonly ElfNote[]; excludeZero: boolean }): KdumpLayout & { notesBlob: Buffer } {
  const bs = p.pageSize;
  const notesBlob = encodeNotes(p.notes);
  const noteOffset = bs + KDUMP_SUB_HEADER_SIZE;
  // Locate the VMCOREINFO descriptor inside the blob.
  let vmcoreinfoOffset = 0;
  let vmcoreinfoSize = 0;
  let off = 0;
  for (const n of p.notes) {
    const nameLen = Buffer.byteLength(n.name) + 1;
    const descOff = off + 12 + pad4(nameLen);
    if (n.name === VMCOREINFO_NOTE_NAME && vmcoreinfoSize === 0) {
      vmcoreinfoOffset = noteOffset + descOff;
      vmcoreinfoSize = n.desc.length;
    }
    off = descOff + pad4(n.desc.length);
  }
  const subHdrBlocks = Math.ceil((KDUMP_SUB_HEADER_SIZE + notesBlob.length) / bs);
  const bitmapOffset = (1 + subHdrBlocks) * bs;
  const bitmapBytes = align(Math.ceil(p.maxPfn / 8), bs) || bs;
  const descOffset = bitmapOffset + 2 * bitmapBytes;
  const dataStart = align(descOffset + PAGE_DESC_SIZE * p.numDumpable, bs);
  return {
    pageSize: bs,
    maxPfn: p.maxPfn,
    numDumpable: p.numDumpable,
    subHdrBlocks,
    noteOffset,
    noteSize: notesBlob.length,
    vmcoreinfoOffset,
    vmcoreinfoSize,
    bitmapOffset,
    bitmapBytes,
    descOffset,
    dataStart,
    zeroPageOffset: p.excludeZero ? dataStart : -1,
    notesBlob,
  };
}
