/**
 * The native copy helper (native/copy.c → native/build/vicover-copy): page data copied from an image
 * file into a dump inside the kernel (copy_file_range, input holes kept as holes), pages read and
 * written without their zero pages (PACK, for raw dumps that exclude them), and write-back of written
 * ranges started early (sync_file_range), none of which Node.js 20 can do without the data passing
 * through it.
 *
 * Optional by design: when the helper is not built (no C compiler at install time), cannot start, or
 * VICOVER_NATIVE_COPY=0 is set, `NativeCopier.open()` returns null and the writers keep their
 * JavaScript path (pread into a buffer, write it out), which produces the same bytes.
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VcvError, wrapError } from '@vicover/errors';
import { nativeSpawn, spawnPiped, type HelperProcess } from './native-spawn.js';

const OP_COPY = 1;
const OP_WRITEBACK = 2;
const OP_DATASYNC = 3;
const OP_PACK = 4;
const OP_BGSYNC = 5;
const REQ = 32;
/** PACK: page size, largest request, and "go on where the previous PACK ended". */
export const PACK_PAGE = 4096;
export const PACK_MAX_BYTES = 64 * 1024 * 1024;
const CONTINUE = 0xffff_ffff_ffff_ffffn;
const REP = 16;

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v as number, k]));

/** The helper binary, or null when it was not built. */
export function nativeCopyHelper(): string | null {
  if (process.env.VICOVER_NATIVE_COPY === '0') return null;
  const p = process.env.VICOVER_NATIVE_COPY_BIN || fileURLToPath(new URL('../native/build/vicover-copy', import.meta.url));
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return p;
  } catch {
    return null;
  }
}

/** A reply: the byte count, and the bytes that follow it (PACK's zero-page bits; empty otherwise). */
interface Reply {
  copied: number;
  extra: Buffer;
}

const NO_EXTRA = Buffer.alloc(0);

interface Pending {
  resolve: (r: Reply) => void;
  /** Bytes that follow this request's reply. */
  extra: number;
  reject: (e: Error) => void;
  what: string;
}

export class NativeCopier {
  private readonly pending: Pending[] = [];
  private partial = Buffer.alloc(0);
  private dead: Error | null = null;
  private stderr = '';
  private closed = false;
  /** The last request's reply (replies come in request order). */
  private last: Promise<unknown> = Promise.resolve();
  /** Requests are being gathered for one write at the end of this tick. */
  private corked = false;

  private constructor(
    private readonly child: HelperProcess,
    readonly outPath: string,
    /** An input file was given: copy() can be used. */
    readonly hasInput: boolean,
    /** How the helper was started: posix_spawn (native/spawn.c), or Node's child_process (a fork). */
    readonly startedWith: 'posix_spawn' | 'child_process',
  ) {
    child.stdout.on('data', (d: Buffer) => this.onData(d));
    child.stderr.on('data', (d: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += d.toString();
    });
    child.on('error', (e) => this.die(e));
    child.on('exit', (code, sig) => {
      if (!this.closed || this.pending.length) this.die(new Error(`vicover-copy exited (${sig ?? code})${this.stderr ? `: ${this.stderr.trim()}` : ''}`));
    });
    child.stdin.on('error', (e) => this.die(e));
  }

  /**
   * Start a helper writing into `outFd` (the dump file, kept open by the caller) and, when given,
   * reading from `inputPath`. Null when the helper is not available. Started with posix_spawn when
   * the addon is built (no fork of this process: native-spawn.ts), else with child_process.spawn.
   */
  static open(opts: { outFd: number; outPath: string; inputPath?: string }): NativeCopier | null {
    const bin = nativeCopyHelper();
    if (!bin) return null;
    let inFd: number | null = null;
    try {
      if (opts.inputPath) inFd = fs.openSync(opts.inputPath, 'r');
      const native = nativeSpawn();
      if (native) {
        try {
          return new NativeCopier(spawnPiped(native, bin, inFd ?? -1, opts.outFd), opts.outPath, inFd !== null, 'posix_spawn');
        } catch {
          // posix_spawn refused (no closefrom in this libc, …): child_process below says the same or works
        }
      }
      const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe', inFd ?? 'ignore', opts.outFd] });
      return new NativeCopier(child as HelperProcess, opts.outPath, inFd !== null, 'child_process');
    } catch {
      return null;
    } finally {
      if (inFd !== null) fs.closeSync(inFd); // the child holds its own copy
    }
  }

  /** Running and not closed: a helper that failed to start is not used (the writer falls back to its JavaScript path). */
  get usable(): boolean {
    return this.dead === null && !this.closed;
  }

  private onData(d: Buffer): void {
    let buf = this.partial.length ? Buffer.concat([this.partial, d]) : d;
    while (buf.length >= REP + (this.pending[0]?.extra ?? 0)) {
      const status = Number(buf.readBigInt64LE(0));
      const copied = Number(buf.readBigUInt64LE(8));
      const p = this.pending.shift();
      const n = p?.extra ?? 0;
      const extra = n ? Buffer.from(buf.subarray(REP, REP + n)) : NO_EXTRA;
      buf = buf.subarray(REP + n);
      if (!p) continue;
      if (status === 0) p.resolve({ copied, extra });
      else {
        const name = ERRNO_NAMES.get(-status) ?? `errno ${-status}`;
        const err = Object.assign(new Error(`${name}: ${p.what} of ${this.outPath} failed`), { code: name, errno: status });
        p.reject(wrapError(err, 'VCV_ERR_IO', `${p.what} of ${this.outPath} failed (${name})`, { file: this.outPath }));
      }
    }
    this.partial = Buffer.from(buf);
  }

  private die(e: Error): void {
    if (this.dead) return;
    this.dead = wrapError(e, 'VCV_ERR_IO', `the native copy helper failed: ${e.message}`, { file: this.outPath });
    for (const p of this.pending.splice(0)) p.reject(this.dead);
  }

  private request(op: number, flags: number, a: number, b: number | bigint, c: number, what: string, extra = 0): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.closed) return Promise.reject(new VcvError('VCV_ERR_INTERNAL', 'native copy helper used after close'));
    const req = Buffer.alloc(REQ);
    req.writeUInt32LE(op, 0);
    req.writeUInt32LE(flags, 4);
    req.writeBigUInt64LE(BigInt(a), 8);
    req.writeBigUInt64LE(BigInt(b), 16);
    req.writeBigUInt64LE(BigInt(c), 24);
    const p = new Promise<Reply>((resolve, reject) => {
      this.pending.push({ resolve, reject, what, extra });
      // Requests made in one tick leave in one write (a block's pieces, its write-back, the next block's).
      if (!this.corked) {
        this.corked = true;
        this.child.stdin.cork();
        process.nextTick(() => {
          this.corked = false;
          this.child.stdin.uncork();
        });
      }
      this.child.stdin.write(req);
    });
    this.last = p.catch(() => undefined);
    return p;
  }

  /** Copy `len` bytes of the input at `inPos` to the output at `outPos`; resolves with the data bytes (holes excluded). */
  copy(inPos: number, outPos: number, len: number, writeback = true): Promise<number> {
    return this.request(OP_COPY, writeback ? 1 : 0, inPos, outPos, len, 'copying page data').then((r) => r.copied);
  }

  /**
   * Read the 4 KiB pages of the input's [inPos, inPos+len) (past its end: zeros) and write those that
   * are not all zero one after the other from `outPos` — or, with null, from where the previous pack()
   * ended. Resolves with the bytes written, the output offset they were written from, and one bit per
   * page (least significant first) set for the zero pages, which were not written. `len`: a multiple
   * of 4 KiB, at most PACK_MAX_BYTES.
   */
  pack(inPos: number, outPos: number | null, len: number, writeback = true): Promise<{ written: number; from: number; zero: Buffer }> {
    if (len % PACK_PAGE !== 0 || len > PACK_MAX_BYTES || len < 0) return Promise.reject(new VcvError('VCV_ERR_INTERNAL', `pack(): bad length ${len}`));
    return this.request(OP_PACK, writeback ? 1 : 0, inPos, outPos === null ? CONTINUE : outPos, len, 'writing page data', 8 + Math.ceil(len / PACK_PAGE / 8)).then(
      (r) => ({ written: r.copied, from: Number(r.extra.readBigUInt64LE(0)), zero: r.extra.subarray(8) }),
    );
  }

  /**
   * Start write-back of [pos, pos+len) of the output; does not wait for the disk. Errors surface at the
   * next fdatasync. `written`: the caller wrote these bytes itself (not through copy()/pack()), so they
   * count toward backgroundSync().
   */
  writeback(pos: number, len: number, written = false): void {
    if (this.dead || this.closed || len <= 0) return;
    this.request(OP_WRITEBACK, written ? 1 : 0, pos, len, 0, 'write-back').catch(() => undefined);
  }

  /**
   * From now on the helper fdatasyncs the output in the background each time `bytes` more have been
   * written (0: stop), so the disk flushes while the copy goes on and the writer's own final fdatasync
   * finds little left (on this project's virtual disks a flush costs about as much as the write). It
   * syncs through its own open file description: a write-back error is still reported to the writer's
   * fdatasync, and also fails the helper's later requests. Resolves false when the helper could not start it.
   */
  backgroundSync(bytes: number): Promise<boolean> {
    return this.request(OP_BGSYNC, 0, bytes, 0, 0, 'background fdatasync').then(
      () => true,
      () => false,
    );
  }

  /** fdatasync of the output, in order after every earlier request. Resolves with the number of background syncs done so far. */
  async datasync(): Promise<number> {
    return (await this.request(OP_DATASYNC, 0, 0, 0, 0, 'fdatasync')).copied;
  }

  /** Let the pending requests finish and stop the helper. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.last;
    this.closed = true;
    const exited = new Promise<void>((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) resolve();
      else this.child.once('exit', () => resolve());
    });
    this.child.stdin.end();
    await exited;
  }
}
