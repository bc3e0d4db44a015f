/**
 * A sparse RAM file the synthetic-kernel builders write into (plugin-linux's `SyntheticRam`): writes go
 * to a small write-back cache of 2 MiB chunks; a flushed chunk writes only its non-zero 4 KiB pages,
 * so what was never written stays a hole. Used only while generating an image (one writer, fresh file).
 */
import * as fs from 'node:fs';
import type { ElfNote, PhysRange } from '@vicover/core';
import { VcvError, wrapError } from '@vicover/errors';
import type { SyntheticRam } from '@vicover/plugin-linux';

const CHUNK = 2 * 1024 * 1024;
const PAGE = 4096;

/** All-zero 4 KiB page at byte offset `off` of `words`' buffer (words: a 32-bit view of it). */
function zeroPage(words: Int32Array, off: number): boolean {
  const a = off >> 2;
  for (let i = a + (PAGE >> 2) - 1; i >= a; i--) if (words[i] !== 0) return false;
  return true;
}

export class SparseFileRam implements SyntheticRam {
  readonly ranges: readonly PhysRange[];
  readonly maxPfn: number;
  readonly notes: ElfNote[] = [];
  readonly description: string;
  private fd: number;
  /** Cached chunks in LRU order (Map keeps insertion order; a hit re-inserts). */
  private readonly cache = new Map<number, { buf: Buffer; dirty: boolean }>();
  /** Chunks that have data in the file (the others are holes: no need to read them). */
  private readonly onDisk = new Set<number>();
  /** Bytes written to the file (non-zero pages), for the generator's log. */
  bytesWritten = 0;

  constructor(
    readonly path: string,
    readonly ramBytes: number,
    private readonly maxChunks = 32,
  ) {
    try {
      this.fd = fs.openSync(path, 'w+', 0o600);
      fs.ftruncateSync(this.fd, ramBytes);
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `cannot create the simulated RAM file ${path}`, { file: path });
    }
    this.ranges = [{ start: 0, end: ramBytes }];
    this.maxPfn = ramBytes / PAGE;
    this.description = `simulated RAM file ${path} (being generated)`;
  }

  private check(gpa: number, length: number): void {
    if (!(Number.isSafeInteger(gpa) && gpa >= 0 && Number.isSafeInteger(length) && length >= 0 && gpa + length <= this.ramBytes)) {
      throw new VcvError('VCV_ERR_MEMORY_RANGE', `0x${gpa.toString(16)} (+${length}) is outside the simulated RAM`, { gpa, length });
    }
  }

  private chunk(ci: number): { buf: Buffer; dirty: boolean } {
    let c = this.cache.get(ci);
    if (c) {
      this.cache.delete(ci);
      this.cache.set(ci, c);
      return c;
    }
    const buf = Buffer.alloc(CHUNK);
    if (this.onDisk.has(ci)) fs.readSync(this.fd, buf, 0, CHUNK, ci * CHUNK);
    c = { buf, dirty: false };
    this.cache.set(ci, c);
    while (this.cache.size > this.maxChunks) {
      const [oldest, oc] = this.cache.entries().next().value as [number, { buf: Buffer; dirty: boolean }];
      this.cache.delete(oldest);
      if (oc.dirty) this.flushChunk(oldest, oc.buf);
    }
    return c;
  }

  /** Write the non-zero pages of a chunk, as runs (zero pages stay holes in a fresh file). */
  private flushChunk(ci: number, buf: Buffer): void {
    const words = new Int32Array(buf.buffer, buf.byteOffset, CHUNK >> 2);
    let runStart = -1;
    for (let p = 0; p <= CHUNK / PAGE; p++) {
      const nonZero = p < CHUNK / PAGE && !zeroPage(words, p * PAGE);
      if (nonZero && runStart < 0) runStart = p;
      if (!nonZero && runStart >= 0) {
        this.pwrite(buf.subarray(runStart * PAGE, p * PAGE), ci * CHUNK + runStart * PAGE);
        runStart = -1;
      }
    }
  }

  /** Write bytes straight to the file (bulk content of data pages), bypassing the cache. */
  pwrite(bytes: Uint8Array, position: number): void {
    this.check(position, bytes.length);
    // Keep cached chunks coherent with what goes straight to the file.
    for (let ci = Math.floor(position / CHUNK); ci * CHUNK < position + bytes.length; ci++) {
      const c = this.cache.get(ci);
      if (!c) continue;
      const a = Math.max(position, ci * CHUNK);
      const z = Math.min(position + bytes.length, (ci + 1) * CHUNK);
      c.buf.set(bytes.subarray(a - position, z - position), a - ci * CHUNK);
    }
    for (let ci = Math.floor(position / CHUNK); ci * CHUNK < position + bytes.length; ci++) this.onDisk.add(ci);
    let done = 0;
    while (done < bytes.length) {
      done += fs.writeSync(this.fd, bytes, done, bytes.length - done, position + done);
    }
    this.bytesWritten += bytes.length;
  }

  write(gpa: number, bytes: Uint8Array): void {
    this.check(gpa, bytes.length);
    let done = 0;
    while (done < bytes.length) {
      const a = gpa + done;
      const ci = Math.floor(a / CHUNK);
      const inChunk = a - ci * CHUNK;
      const n = Math.min(bytes.length - done, CHUNK - inChunk);
      const c = this.chunk(ci);
      c.buf.set(bytes.subarray(done, done + n), inChunk);
      c.dirty = true;
      done += n;
    }
  }

  viewOf(gpa: number, length: number): DataView {
    this.check(gpa, length);
    const ci = Math.floor(gpa / CHUNK);
    const inChunk = gpa - ci * CHUNK;
    if (inChunk + length > CHUNK) throw new VcvError('VCV_ERR_INTERNAL', `viewOf crosses a ${CHUNK}-byte chunk`, { gpa, length });
    const c = this.chunk(ci);
    c.dirty = true;
    return new DataView(c.buf.buffer, c.buf.byteOffset + inChunk, length);
  }

  /** The cached chunk buffer holding gpa (marked dirty): for bulk writers that patch in place. */
  bufferAt(gpa: number): { buf: Buffer; off: number } {
    const ci = Math.floor(gpa / CHUNK);
    const c = this.chunk(ci);
    c.dirty = true;
    return { buf: c.buf, off: gpa - ci * CHUNK };
  }

  writeU64(gpa: number, v: bigint): void {
    this.viewOf(gpa, 8).setBigUint64(0, BigInt.asUintN(64, v), true);
  }
  writeU32(gpa: number, v: number): void {
    this.viewOf(gpa, 4).setUint32(0, v >>> 0, true);
  }
  writeU16(gpa: number, v: number): void {
    this.viewOf(gpa, 2).setUint16(0, v, true);
  }
  writeU8(gpa: number, v: number): void {
    this.viewOf(gpa, 1).setUint8(0, v);
  }
  readU64(gpa: number): bigint {
    const b = Buffer.alloc(8);
    this.readSync(gpa, b, 0, 8);
    return b.readBigUInt64LE(0);
  }

  readSync(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    this.check(gpa, length);
    let done = 0;
    while (done < length) {
      const a = gpa + done;
      const ci = Math.floor(a / CHUNK);
      const inChunk = a - ci * CHUNK;
      const n = Math.min(length - done, CHUNK - inChunk);
      const c = this.cache.get(ci);
      if (c) buf.set(c.buf.subarray(inChunk, inChunk + n), offset + done);
      else if (!this.onDisk.has(ci)) buf.fill(0, offset + done, offset + done + n);
      else {
        const got = fs.readSync(this.fd, buf, offset + done, n, a);
        if (got < n) buf.fill(0, offset + done + got, offset + done + n);
      }
      done += n;
    }
  }

  async read(gpa: number, buf: Uint8Array, offset: number, length: number): Promise<void> {
    this.readSync(gpa, buf, offset, length);
  }

  flush(): void {
    for (const [ci, c] of this.cache) {
      if (c.dirty) this.flushChunk(ci, c.buf);
      c.dirty = false;
    }
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    this.flush();
    this.cache.clear();
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = -1;
  }
}
