/**
 * A small bounds-checked little-endian reader over bytes read from guest memory. Every read checks
 * its range first, so a truncated or hostile structure gives a coded error naming what was being read,
 * never a RangeError from deep inside.
 */
import { VcvError, type ErrorCode } from '@vicover/errors';

export class LeReader {
  private readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    /** The error code a bad offset raises (the caller's domain: printk, introspection, …). */
    private readonly code: ErrorCode,
    /** What the bytes are, for messages: `struct printk_ringbuffer at 0xffff…`. */
    private readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.length;
  }

  private check(off: number, size: number): void {
    if (!Number.isInteger(off) || off < 0 || off + size > this.bytes.length) {
      throw new VcvError(this.code, `${this.what}: field at offset ${off} (+${size}) is outside the ${this.bytes.length} bytes read`, {
        offset: off,
      });
    }
  }

  u8(off: number): number {
    this.check(off, 1);
    return this.view.getUint8(off);
  }
  u16(off: number): number {
    this.check(off, 2);
    return this.view.getUint16(off, true);
  }
  u32(off: number): number {
    this.check(off, 4);
    return this.view.getUint32(off, true);
  }
  i32(off: number): number {
    this.check(off, 4);
    return this.view.getInt32(off, true);
  }
  u64(off: number): bigint {
    this.check(off, 8);
    return this.view.getBigUint64(off, true);
  }
  /** A u64 that must be a small number (≤ 2^53 − 1), else the reader's error. */
  u64n(off: number, field: string): number {
    const v = this.u64(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VcvError(this.code, `${this.what}: ${field} = 0x${v.toString(16)} is out of range`, { offset: off });
    }
    return Number(v);
  }
  /** A NUL-terminated string inside [off, off + max). */
  cstring(off: number, max: number): string {
    this.check(off, max);
    const end = this.bytes.indexOf(0, off);
    const stop = end < 0 || end > off + max ? off + max : end;
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + off, stop - off).toString('utf8');
  }
  slice(off: number, len: number): Uint8Array {
    this.check(off, len);
    return this.bytes.subarray(off, off + len);
  }
}

export const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
