/**
 * The makedumpfile "flattened" format (`makedumpfile -F`, QEMU's `kdump-zlib/lzo/snappy`), for pipes:
 *
 *   4096-byte header: char signature[16] = "makedumpfile\0\0\0\0"; i64 type = 1; i64 version = 1
 *   then records: i64 offset; i64 buf_size; buf_size bytes   — all integers big-endian
 *   terminator: offset = buf_size = -1
 *
 * Each record is a positional write into the "rearranged" (seekable) file; later records win where
 * they overlap. `makedumpfile -R out < flat` produces the seekable file.
 */
import { BinReader, BinWriter } from '../binary.js';

export const FLAT_SIGNATURE = 'makedumpfile';
export const FLAT_HEADER_SIZE = 4096;
export const FLAT_TYPE = 1n;
export const FLAT_VERSION = 1n;
export const FLAT_RECORD_HEADER_SIZE = 16;

export interface FlatHeader {
  signature: string;
  type: bigint;
  version: bigint;
}

export interface FlatRecordHeader {
  offset: bigint;
  size: bigint;
}

export function encodeFlatHeader(h: FlatHeader = { signature: FLAT_SIGNATURE, type: FLAT_TYPE, version: FLAT_VERSION }): Buffer {
  const w = new BinWriter(FLAT_HEADER_SIZE);
  w.cstr(0, 16, h.signature).i64be(16, h.type).i64be(24, h.version);
  return w.buf;
}

export function decodeFlatHeader(buf: Buffer, file?: string): FlatHeader {
  const r = new BinReader(buf, 'flattened header', 0, file);
  return { signature: r.cstr(0, 16), type: r.i64be(16), version: r.i64be(24) };
}

export function isFlatSignature(buf: Buffer): boolean {
  return buf.length >= 16 && buf.subarray(0, 12).toString('latin1') === FLAT_SIGNATURE && buf.subarray(12, 16).every((b) => b === 0);
}

export function encodeFlatRecordHeader(h: FlatRecordHeader): Buffer {
  return new BinWriter(FLAT_RECORD_HEADER_SIZE).i64be(0, h.offset).i64be(8, h.size).buf;
}

export function decodeFlatRecordHeader(buf: Buffer, base = 0, file?: string): FlatRecordHeader {
  const r = new BinReader(buf, 'flattened record header', base, file);
  return { offset: r.i64be(0), size: r.i64be(8) };
}
