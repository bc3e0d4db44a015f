/**
 * An fs-like object over node:fs/promises that fails on purpose: ENOSPC (or EIO) once more than
 * `budget` bytes have been written, and optionally short writes. Used instead of filling a real disk
 * (which cannot be done safely here); everything else is the real file system.
 */
import * as fsp from 'node:fs/promises';
import type { DumpFileHandle, DumpFs } from '../../src/fsio.js';

export interface FaultyFsOptions {
  /** Fail writes once this many bytes have been written through this fs. */
  budget?: number;
  errno?: 'ENOSPC' | 'EIO';
  /** Write at most this many bytes per call (short writes). */
  maxWrite?: number;
  /** Fail datasync/sync with this errno. */
  syncErrno?: string;
}

function errnoError(code: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: simulated`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

export function faultyFs(o: FaultyFsOptions): DumpFs & { written: number; shortWrites: number } {
  const state = { written: 0, shortWrites: 0 };
  const budgetLeft = () => (o.budget === undefined ? Infinity : o.budget - state.written);
  const wrap = (fh: fsp.FileHandle): DumpFileHandle => ({
    async write(buffer, offset, length, position) {
      let n = Math.min(length, o.maxWrite ?? Infinity);
      const left = budgetLeft();
      if (left <= 0) throw errnoError(o.errno ?? 'ENOSPC');
      if (n > left) n = left; // partial write up to the budget, the next call fails
      if (n < length) state.shortWrites++;
      const r = await fh.write(buffer, offset, n, position);
      state.written += r.bytesWritten;
      return { bytesWritten: r.bytesWritten };
    },
    async writev(buffers, position) {
      // flatten to one write so short-write behaviour is the same
      const total = buffers.reduce((a, b) => a + b.byteLength, 0);
      const joined = Buffer.concat(buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)), total);
      return this.write(joined, 0, joined.length, position);
    },
    read: (b, off, len, pos) => fh.read(b, off, len, pos),
    async datasync() {
      if (o.syncErrno) throw errnoError(o.syncErrno);
      return fh.datasync();
    },
    async sync() {
      if (o.syncErrno) throw errnoError(o.syncErrno);
      return fh.sync();
    },
    truncate: (len) => fh.truncate(len),
    stat: () => fh.stat(),
    close: () => fh.close(),
  });
  return Object.assign(state, {
    open: async (p: string, flags: string, mode?: number) => wrap(await fsp.open(p, flags, mode)),
    unlink: (p: string) => fsp.unlink(p),
  }) as DumpFs & typeof state;
}
