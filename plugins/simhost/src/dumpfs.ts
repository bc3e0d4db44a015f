/**
 * Where a simulated crash's dump goes (the core's `dumpTarget` seam): through the modelled disk, into
 * a real file (small dumps: they can be opened with `vicover dmesg`, makedumpfile, crash) or into a
 * counting sink that keeps nothing (a dump of a simulated TiB guest does not fit this machine's disk).
 * Either way every write takes the modelled disk's time for its bytes; the real file's own write runs
 * alongside, so the slower of the two counts.
 *
 * fsync is the modelled disk's: it waits until the model has transferred every byte written so far
 * (the real file is a by-product and is not fsynced — its page-cache writeback is this machine's
 * business, not the simulated host's).
 */
import type { DumpFileHandle, DumpFs } from '@vicover/dumpfmt';
import type { ModelledDisk } from './disk.js';

export const DUMP_STREAM = 'dump';


function total(bufs: readonly NodeJS.ArrayBufferView[]): number {
  let n = 0;
  for (const b of bufs) n += b.byteLength;
  return n;
}

/** A file handle that counts what is written and stores nothing. */
class CountingHandle implements DumpFileHandle {
  size = 0;
  constructor(private readonly sink: CountingSink) {}
  async write(_b: Uint8Array, _o: number, length: number, position: number) {
    this.size = Math.max(this.size, position + length);
    this.sink.bytes += length;
    return { bytesWritten: length };
  }
  async writev(bufs: readonly NodeJS.ArrayBufferView[], position: number) {
    const n = total(bufs);
    this.size = Math.max(this.size, position + n);
    this.sink.bytes += n;
    return { bytesWritten: n };
  }
  async read(buf: Uint8Array, offset: number, length: number) {
    buf.fill(0, offset, offset + length);
    return { bytesRead: 0 };
  }
  async datasync() {}
  async sync() {}
  async truncate(len: number) {
    this.size = len;
  }
  async stat() {
    return { size: this.size, mode: 0o100600 };
  }
  async close() {}
}

export class CountingSink implements DumpFs {
  bytes = 0;
  async open(): Promise<DumpFileHandle> {
    return new CountingHandle(this);
  }
  async unlink(): Promise<void> {}
}

/** Dirty bytes the dump writer may have queued on the modelled disk before a write waits (write-back). */
export const DIRTY_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * Wrap a file system so every write also passes through the modelled disk, write-back like a page
 * cache: a write queues its bytes on the device and returns (waiting only while more than
 * DIRTY_LIMIT_BYTES are queued), fsync waits until the device has transferred everything queued. So
 * the writer's CPU work overlaps the device's time, as on a real host.
 */
export function modelledFs(disk: ModelledDisk, inner: DumpFs, stream = DUMP_STREAM): DumpFs {
  const wrap = (fh: DumpFileHandle): DumpFileHandle => ({
    async write(buf, offset, length, position) {
      const [r] = await Promise.all([fh.write(buf, offset, length, position), disk.writeBack(stream, length, DIRTY_LIMIT_BYTES)]);
      return r;
    },
    async writev(bufs, position) {
      const [r] = await Promise.all([fh.writev(bufs, position), disk.writeBack(stream, total(bufs), DIRTY_LIMIT_BYTES)]);
      return r;
    },
    read: (buf, offset, length, position) => fh.read(buf, offset, length, position),
    // Durability is the modelled disk's: everything queued has been transferred.
    datasync: () => disk.drain(stream),
    sync: () => disk.drain(stream),
    truncate: (len) => fh.truncate(len),
    stat: () => fh.stat(),
    close: async () => {
      await disk.drain(stream);
      await fh.close();
    },
  });
  return {
    async open(path, flags, mode) {
      return wrap(await inner.open(path, flags, mode));
    },
    unlink: (path) => inner.unlink(path),
  };
}
