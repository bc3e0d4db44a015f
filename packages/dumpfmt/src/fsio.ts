/**
 * The file-system seam of the writers. Writers take an fs-like object so tests can produce ENOSPC, EIO
 * and short writes; the default is node:fs/promises, whose FileHandle already has this shape.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { VcvError, wrapError } from '@vicover/errors';

export interface DumpFileHandle {
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  writev(buffers: readonly NodeJS.ArrayBufferView[], position: number): Promise<{ bytesWritten: number }>;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  truncate(len: number): Promise<void>;
  stat(): Promise<{ size: number; mode: number }>;
  close(): Promise<void>;
}

export interface DumpFs {
  /** Like fs/promises.open: flags 'wx+' (create exclusively), 'r+' (resume), 'r' (directories for fsync). */
  open(path: string, flags: string, mode?: number): Promise<DumpFileHandle>;
  unlink(path: string): Promise<void>;
}

export const nodeFs: DumpFs = {
  open: (p, flags, mode) => fsp.open(p, flags, mode) as Promise<DumpFileHandle>,
  unlink: (p) => fsp.unlink(p),
};

/** Dump files hold guest memory, i.e. secrets. */
export const DUMP_FILE_MODE = 0o600;

/** Linux IOV_MAX. */
const IOV_MAX = 1024;

/**
 * Write all of `bufs` at `pos`, looping over short writes and splitting at IOV_MAX. One writev per
 * 1024 buffers in the normal case.
 */
export async function writevAll(fh: DumpFileHandle, bufs: readonly Uint8Array[], pos: number): Promise<number> {
  let total = 0;
  let i = 0;
  let partial: Uint8Array | undefined; // the unwritten tail of bufs[i-1] after a short write
  while (i < bufs.length || partial) {
    const batch: Uint8Array[] = [];
    let batchLen = 0;
    if (partial) {
      batch.push(partial);
      batchLen += partial.length;
      partial = undefined;
    }
    while (i < bufs.length && batch.length < IOV_MAX) {
      const b = bufs[i++]!;
      if (b.length === 0) continue;
      batch.push(b);
      batchLen += b.length;
    }
    if (batchLen === 0) break;
    const { bytesWritten } = batch.length === 1 ? await fh.write(batch[0]!, 0, batch[0]!.length, pos) : await fh.writev(batch, pos);
    if (!(bytesWritten > 0)) throw new VcvError('VCV_ERR_IO', `write returned ${bytesWritten} bytes at offset ${pos}`, { offset: pos });
    pos += bytesWritten;
    total += bytesWritten;
    if (bytesWritten < batchLen) {
      // Short write: find where it stopped; requeue the rest of this batch.
      let skip = bytesWritten;
      let k = 0;
      while (skip >= batch[k]!.length) skip -= batch[k++]!.length;
      const rest = batch.slice(k);
      rest[0] = rest[0]!.subarray(skip);
      // put the remainder back in front of the not-yet-batched buffers
      const tail = bufs.slice(i);
      bufs = [...rest.slice(1), ...tail];
      i = 0;
      partial = rest[0];
    }
  }
  return total;
}

export async function writeAll(fh: DumpFileHandle, buf: Uint8Array, pos: number): Promise<void> {
  await writevAll(fh, [buf], pos);
}

export async function readAll(fh: DumpFileHandle, buf: Uint8Array, pos: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead <= 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * Create `file` for writing: mode 0600, O_EXCL unless `overwrite` (then an existing file is unlinked
 * first, so the new one still gets 0600 and a fresh inode), then fsync the directory so the name is
 * durable too.
 */
export async function createDumpFile(fs: DumpFs, file: string, overwrite: boolean): Promise<DumpFileHandle> {
  if (overwrite) {
    try {
      await fs.unlink(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `cannot replace ${file}`, { file });
    }
  }
  let fh: DumpFileHandle;
  try {
    fh = await fs.open(file, 'wx+', DUMP_FILE_MODE);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new VcvError('VCV_ERR_OUTPUT_EXISTS', `${file} already exists; dumps are never overwritten unless asked (overwrite: true)`, { file });
    }
    throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `cannot create ${file}`, { file });
  }
  await syncDir(fs, file);
  return fh;
}

/** fsync the directory holding `file` (best effort: some file systems refuse directory fsync). */
export async function syncDir(fs: DumpFs, file: string): Promise<void> {
  let dh: DumpFileHandle | undefined;
  try {
    dh = await fs.open(path.dirname(path.resolve(file)), 'r');
    await dh.sync();
  } catch {
    // EINVAL/EISDIR on exotic file systems: the data fsyncs still hold.
  } finally {
    await dh?.close().catch(() => undefined);
  }
}

/**
 * A promise chain that runs tasks one after another in submission order. A failed task rejects its own
 * promise only; later tasks still run.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  run<T>(task: () => Promise<T>): Promise<T> {
    this.pending++;
    const p = this.tail.then(task);
    this.tail = p.then(
      () => this.pending--,
      () => this.pending--,
    );
    return p;
  }

  /** Resolves when every task submitted so far has settled. */
  async drain(): Promise<void> {
    while (this.pending > 0) await this.tail;
  }

  get busy(): boolean {
    return this.pending > 0;
  }
}
