/**
 * Reads of kernel virtual memory through the guest page tables. Small synchronous reads for kernel
 * structures; an async range read that translates once and reads each physical run in one go.
 */
import type { MemorySource } from '@vicover/core';
import { VcvError, type ErrorCode } from '@vicover/errors';
import { PAGE_SIZE, type X86_64Paging } from './paging.js';
import { LeReader, hex } from './reader.js';

/** Largest single structure read through readStruct (guards against absurd sizes from guest data). */
export const MAX_STRUCT_READ = 64 * 1024 * 1024;

export class KernelMemory {
  constructor(
    readonly source: MemorySource,
    readonly paging: X86_64Paging,
  ) {}

  /** Read [va, va+length) into buf[offset…], page by page (for small reads). */
  readSync(va: bigint, buf: Uint8Array, offset: number, length: number): void {
    let cur = va;
    let off = offset;
    let left = length;
    while (left > 0) {
      const pa = this.paging.translate(cur);
      const n = Math.min(left, PAGE_SIZE - (pa % PAGE_SIZE));
      this.source.readSync(pa, buf, off, n);
      cur += BigInt(n);
      off += n;
      left -= n;
    }
  }

  /** Read [va, va+length) with one source read per physically contiguous run. */
  async read(va: bigint, buf: Uint8Array, offset: number, length: number): Promise<void> {
    let off = offset;
    for (const run of this.paging.translateRange(va, length)) {
      await this.source.read(run.pa, buf, off, run.length);
      off += run.length;
    }
  }

  /** Read `length` bytes at va into a new buffer, refusing lengths above `max`. */
  bytes(va: bigint, length: number, what: string, code: ErrorCode = 'VCV_ERR_INTROSPECTION', max = MAX_STRUCT_READ): Uint8Array {
    if (!Number.isSafeInteger(length) || length < 0 || length > max) {
      throw new VcvError(code, `${what}: refusing to read ${length} bytes at ${hex(va)} (limit ${max})`, { va: hex(va), length });
    }
    const buf = new Uint8Array(length);
    this.readSync(va, buf, 0, length);
    return buf;
  }

  /** A bounds-checked reader over `length` bytes at va. */
  struct(va: bigint, length: number, what: string, code: ErrorCode = 'VCV_ERR_INTROSPECTION'): LeReader {
    return new LeReader(this.bytes(va, length, what, code), code, `${what} at ${hex(va)}`);
  }

  u64(va: bigint): bigint {
    const b = new Uint8Array(8);
    this.readSync(va, b, 0, 8);
    return new DataView(b.buffer).getBigUint64(0, true);
  }

  u32(va: bigint): number {
    const b = new Uint8Array(4);
    this.readSync(va, b, 0, 4);
    return new DataView(b.buffer).getUint32(0, true);
  }
}
