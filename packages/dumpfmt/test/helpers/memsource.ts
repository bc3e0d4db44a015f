import type { ByteSource } from '../../src/source.js';

/** An in-memory ByteSource (lets the truncation tests try every cut without writing thousands of files). */
export class MemSource implements ByteSource {
  readonly size: number;
  constructor(readonly buf: Buffer, readonly file = 'mem') {
    this.size = buf.length;
  }
  readInto(b: Uint8Array, off: number, len: number, pos: number): number {
    if (pos >= this.size) return 0;
    const n = Math.min(len, this.size - pos);
    b.set(this.buf.subarray(pos, pos + n), off);
    return n;
  }
  close(): void {}
}
