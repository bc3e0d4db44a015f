/**
 * `struct page_desc` (24 bytes), one per dumpable pfn, in pfn order after the bitmaps:
 *   @0 i64 offset (absolute file offset of the data; 0 = lost page)   @8 u32 size
 *   @12 u32 flags (0 raw, else one codec flag)                          @16 u64 page_flags (0)
 *
 * `offset` is a number: file offsets stay far below 2^53. Hot paths write descriptors with
 * `writePageDesc` straight into a batch buffer (no bigint, no allocation).
 */
import { BinReader } from '../binary.js';

export const PAGE_DESC_SIZE = 24;

export interface PageDesc {
  offset: number;
  size: number;
  flags: number;
  pageFlags: bigint;
}

const TWO32 = 2 ** 32;

export function writePageDesc(buf: Buffer, at: number, offset: number, size: number, flags: number): void {
  buf.writeUInt32LE(offset % TWO32, at);
  buf.writeUInt32LE(Math.floor(offset / TWO32), at + 4);
  buf.writeUInt32LE(size, at + 8);
  buf.writeUInt32LE(flags, at + 12);
  buf.writeUInt32LE(0, at + 16);
  buf.writeUInt32LE(0, at + 20);
}

/** Read the offset of the descriptor at `at`: number (inexact only above 2^53, which no real file reaches). */
export function readPageDescOffset(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at + 4) * TWO32 + buf.readUInt32LE(at);
}

export function encodePageDesc(d: PageDesc): Buffer {
  const b = Buffer.alloc(PAGE_DESC_SIZE);
  writePageDesc(b, 0, d.offset, d.size, d.flags);
  b.writeBigUInt64LE(d.pageFlags, 16);
  return b;
}

export function decodePageDesc(buf: Buffer, at = 0, base = 0, file?: string): PageDesc {
  const r = new BinReader(buf, 'page descriptor', base, file);
  r.need(at, PAGE_DESC_SIZE);
  return { offset: readPageDescOffset(buf, at), size: r.u32(at + 8), flags: r.u32(at + 12), pageFlags: r.u64(at + 16) };
}
