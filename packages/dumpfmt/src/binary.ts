/**
 * A small bounds-checked reader and writer over Buffer. Every read checks the length first, so a
 * truncated or hostile input gives a coded VcvError (VCV_ERR_FORMAT_TRUNCATED) instead of a RangeError
 * from deep inside. Little-endian unless the method name says otherwise.
 */
import { truncated } from './errors.js';

export class BinReader {
  /** Absolute file offset of `buf[0]`, only used in error details. */
  readonly base: number;

  constructor(
    readonly buf: Buffer,
    /** What is being decoded, for error messages ("kdump header"). */
    readonly what: string,
    base = 0,
    readonly file?: string,
  ) {
    this.base = base;
  }

  get length(): number {
    return this.buf.length;
  }

  need(off: number, len: number): void {
    if (!(off >= 0 && len >= 0 && off + len <= this.buf.length)) {
      const details: Record<string, unknown> = { offset: this.base + off, need: len, have: Math.max(0, this.buf.length - off) };
      if (this.file !== undefined) details.file = this.file;
      throw truncated(this.what, details);
    }
  }

  u8(off: number): number {
    this.need(off, 1);
    return this.buf[off]!;
  }
  u16(off: number): number {
    this.need(off, 2);
    return this.buf.readUInt16LE(off);
  }
  u32(off: number): number {
    this.need(off, 4);
    return this.buf.readUInt32LE(off);
  }
  i32(off: number): number {
    this.need(off, 4);
    return this.buf.readInt32LE(off);
  }
  u64(off: number): bigint {
    this.need(off, 8);
    return this.buf.readBigUInt64LE(off);
  }
  i64(off: number): bigint {
    this.need(off, 8);
    return this.buf.readBigInt64LE(off);
  }
  i64be(off: number): bigint {
    this.need(off, 8);
    return this.buf.readBigInt64BE(off);
  }
  bytes(off: number, len: number): Buffer {
    this.need(off, len);
    return this.buf.subarray(off, off + len);
  }
  /** A fixed-size char array: the bytes up to the first NUL, decoded as UTF-8. */
  cstr(off: number, len: number): string {
    const b = this.bytes(off, len);
    const nul = b.indexOf(0);
    return b.subarray(0, nul < 0 ? len : nul).toString('utf8');
  }
}

/** Writes into a zero-filled Buffer of a fixed size. Writers are only fed trusted values; no checks beyond Buffer's own. */
export class BinWriter {
  readonly buf: Buffer;
  constructor(size: number) {
    this.buf = Buffer.alloc(size);
  }
  u8(off: number, v: number): this {
    this.buf[off] = v;
    return this;
  }
  u16(off: number, v: number): this {
    this.buf.writeUInt16LE(v, off);
    return this;
  }
  u32(off: number, v: number): this {
    this.buf.writeUInt32LE(v >>> 0, off);
    return this;
  }
  i32(off: number, v: number): this {
    this.buf.writeInt32LE(v | 0, off);
    return this;
  }
  u64(off: number, v: bigint | number): this {
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), off);
    return this;
  }
  i64(off: number, v: bigint | number): this {
    this.buf.writeBigInt64LE(BigInt.asIntN(64, BigInt(v)), off);
    return this;
  }
  i64be(off: number, v: bigint | number): this {
    this.buf.writeBigInt64BE(BigInt.asIntN(64, BigInt(v)), off);
    return this;
  }
  bytes(off: number, b: Uint8Array): this {
    this.buf.set(b, off);
    return this;
  }
  /** A fixed-size char array, NUL padded. The caller guarantees `Buffer.byteLength(s) <= len`. */
  cstr(off: number, len: number, s: string): this {
    this.buf.fill(0, off, off + len);
    this.buf.write(s, off, len, 'utf8');
    return this;
  }
}

export const align = (n: number, a: number): number => Math.ceil(n / a) * a;
export const pad4 = (n: number): number => (n + 3) & ~3;
