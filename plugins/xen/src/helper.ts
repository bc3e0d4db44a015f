/**
 * The native helper (native/helper.c) seen from TypeScript: where it is, building it on first use,
 * and two ways to talk to it.
 *
 * Protocol (one request line, one response): `OK <n> <json>\n` + n payload bytes, or
 * `ERR <ERRNAME> <message>\n`. The helper handles one request at a time, in order.
 *
 * - HelperClient: a child process on pipes; requests are queued and answered asynchronously; payloads
 *   are copied straight into the caller's buffer (dump reads, releases, stats).
 * - SyncHelper: a second helper process on two FIFOs opened in blocking mode, so `readSync` can wait
 *   for its answer with fs.readSync (MemorySource.readSync: page-table walks, kernel structures).
 *   Each FIFO end the helper uses is held only by the helper, so its death is EOF/EPIPE, never a hang.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VcvError } from '@vicover/errors';
import { run, shortText } from '@vicover/hostutil';

export const HELPER_NAME = 'vicover-xen-helper';
export const PROTOCOL = 1;

/** The package's native/ directory (next to dist/ and src/). */
export const NATIVE_DIR = fileURLToPath(new URL('../native/', import.meta.url));

export interface HelperReply<T = Record<string, unknown>> {
  readonly json: T;
  /** Payload bytes (when read into the caller's buffer: the number of bytes written there). */
  readonly payloadBytes: number;
}

function helperError(name: string, message: string, request: string): VcvError {
  return new VcvError('VCV_ERR_BACKEND', `xen helper: ${request.split(' ')[0]}: ${message} (${name})`, { errno: name, request });
}

/**
 * The helper binary to run: an explicit path, the package's native/build/ (built with
 * `npm run build:native -w @vicover/plugin-xen`), or one built now into `buildDir` (keyed by the
 * source's hash). A missing libxen-dev or compiler is a clear VCV_ERR_COMMAND_NOT_FOUND.
 */
export async function locateHelper(o: { helper?: string; buildDir: string; timeoutMs?: number; usePrebuilt?: boolean }): Promise<string> {
  if (o.helper) {
    if (!fs.existsSync(o.helper)) throw new VcvError('VCV_ERR_CONFIG_INVALID', `xen: the helper ${o.helper} does not exist`, { plugin: 'xen' });
    return o.helper;
  }
  const src = path.join(NATIVE_DIR, 'helper.c');
  const prebuilt = path.join(NATIVE_DIR, 'build', HELPER_NAME);
  const source = fs.readFileSync(src);
  if (o.usePrebuilt !== false && fs.existsSync(prebuilt) && fs.statSync(prebuilt).mtimeMs >= fs.statSync(src).mtimeMs) return prebuilt;
  const key = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const out = path.join(o.buildDir, `helper-${key}`);
  const bin = path.join(out, HELPER_NAME);
  if (fs.existsSync(bin)) return bin;
  if (!fs.existsSync('/usr/include/xenctrl.h') || !fs.existsSync('/usr/include/xenforeignmemory.h')) {
    throw new VcvError(
      'VCV_ERR_COMMAND_NOT_FOUND',
      `xen: the native helper is not built and cannot be: xenctrl.h/xenforeignmemory.h are missing. Install libxen-dev, gcc and make (apt-get install libxen-dev gcc make), or build it elsewhere and give its path as the option "helper"`,
      { command: 'cc', plugin: 'xen' },
    );
  }
  fs.mkdirSync(out, { recursive: true, mode: 0o700 });
  await run('make', ['-s', '-C', NATIVE_DIR, `OUT=${out}`], { timeoutMs: o.timeoutMs ?? 120_000 });
  return bin;
}

interface Pending {
  readonly line: string;
  readonly into: { buf: Uint8Array; offset: number; length: number } | null;
  resolve(r: HelperReply<never>): void;
  reject(e: Error): void;
}

/** Incremental parser of helper responses (shared by both clients). */
class ReplyParser {
  private head = '';
  private json: unknown = null;
  private need = 0;
  private got = 0;
  private sink: Buffer | null = null;

  /**
   * Feed bytes; returns the number consumed. `onReply` runs once per complete reply with the sink the
   * payload went to. `target` gives the destination of the next payload.
   */
  feed(
    data: Buffer,
    target: () => { buf: Uint8Array; offset: number; length: number } | null,
    onReply: (r: { json: unknown; payloadBytes: number; payload: Buffer | null } | { error: string; message: string }) => void,
  ): number {
    let pos = 0;
    while (pos < data.length) {
      if (this.need > this.got) {
        const n = Math.min(data.length - pos, this.need - this.got);
        if (this.sink) data.copy(this.sink, this.got, pos, pos + n);
        this.got += n;
        pos += n;
        if (this.got === this.need) {
          const payload = this.sink;
          this.need = this.got = 0;
          this.sink = null;
          onReply({ json: this.json, payloadBytes: payload?.length ?? 0, payload });
        }
        continue;
      }
      const nl = data.indexOf(10, pos);
      if (nl < 0) {
        this.head += data.toString('latin1', pos);
        return data.length;
      }
      const line = this.head + data.toString('latin1', pos, nl);
      this.head = '';
      pos = nl + 1;
      const m = /^OK (\d+) (.*)$/.exec(line);
      if (m) {
        const n = Number(m[1]);
        let json: unknown;
        try {
          json = JSON.parse(m[2]!);
        } catch {
          onReply({ error: 'EPROTO', message: `unparsable reply: ${line.slice(0, 200)}` });
          continue;
        }
        if (n === 0) {
          onReply({ json, payloadBytes: 0, payload: null });
          continue;
        }
        const t = target();
        if (t && t.length !== n) {
          onReply({ error: 'EPROTO', message: `payload of ${n} bytes, expected ${t.length}` });
          return data.length; // the stream is out of step: stop parsing
        }
        this.json = json;
        this.need = n;
        this.got = 0;
        this.sink = t ? Buffer.from(t.buf.buffer, t.buf.byteOffset + t.offset, t.length) : Buffer.allocUnsafe(n);
        continue;
      }
      const e = /^ERR (\S+) ?(.*)$/.exec(line);
      if (e) onReply({ error: e[1]!, message: e[2]! });
      else onReply({ error: 'EPROTO', message: `unexpected line: ${line.slice(0, 200)}` });
    }
    return pos;
  }
}

/** A helper process on pipes, answering queued requests asynchronously. */
export class HelperClient {
  private readonly queue: Pending[] = [];
  private readonly parser = new ReplyParser();
  private stderrTail = '';
  private dead: Error | null = null;

  private constructor(private readonly child: ChildProcess, readonly bin: string) {
    child.stdout!.on('data', (d: Buffer) => this.onData(d));
    child.stderr!.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-2000);
    });
    child.on('exit', (code, signal) => this.fail(new VcvError('VCV_ERR_BACKEND', `xen helper exited (${code ?? signal})${this.stderrTail ? `: ${shortText(this.stderrTail)}` : ''}`, { code, signal })));
    child.on('error', (e) => this.fail(new VcvError('VCV_ERR_COMMAND_NOT_FOUND', `xen helper ${bin} cannot run: ${e.message}`, { command: bin }, { cause: e })));
    child.stdin!.on('error', () => undefined);
  }

  static start(bin: string): HelperClient {
    const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    return new HelperClient(child, bin);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The helper's last stderr lines (libxenctrl logs there). */
  get stderr(): string {
    return this.stderrTail;
  }

  private fail(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    for (const p of this.queue.splice(0)) p.reject(e);
  }

  private onData(d: Buffer): void {
    this.parser.feed(
      d,
      () => this.queue[0]?.into ?? null,
      (r) => {
        const p = this.queue.shift();
        if (!p) return;
        if ('error' in r) p.reject(helperError(r.error, r.message, p.line));
        else p.resolve({ json: r.json, payloadBytes: r.payloadBytes } as never);
      },
    );
  }

  /** Send one request; a payload goes into `into` (exactly `length` bytes expected) or is dropped. */
  request<T = Record<string, unknown>>(line: string, into?: { buf: Uint8Array; offset: number; length: number }): Promise<HelperReply<T>> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.queue.push({ line, into: into ?? null, resolve: resolve as never, reject });
      this.child.stdin!.write(`${line}\n`);
    });
  }

  async close(): Promise<void> {
    if (this.dead) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end('quit\n');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

/** A helper process on blocking FIFOs: requests wait for their answer synchronously. */
export class SyncHelper {
  private readonly child: ChildProcess;
  private readonly reqFd: number;
  private readonly respFd: number;
  private readonly parser = new ReplyParser();
  private readonly chunk = Buffer.allocUnsafe(256 * 1024);
  private stderrTail = '';
  private closed = false;

  constructor(readonly bin: string) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vicover-xen-'));
    const req = path.join(dir, 'req');
    const resp = path.join(dir, 'resp');
    try {
      execFileSync('mkfifo', ['-m', '0600', req, resp]);
      // O_RDWR opens of a FIFO never block on Linux; they only serve to hand the child its ends.
      const reqRw = fs.openSync(req, fs.constants.O_RDWR);
      const respRw = fs.openSync(resp, fs.constants.O_RDWR);
      this.child = spawn(bin, [], { stdio: [reqRw, respRw, 'pipe'] });
      this.child.stderr!.on('data', (d: Buffer) => {
        this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-2000);
      });
      this.child.on('error', () => undefined);
      this.reqFd = fs.openSync(req, fs.constants.O_WRONLY);
      this.respFd = fs.openSync(resp, fs.constants.O_RDONLY);
      fs.closeSync(reqRw);
      fs.closeSync(respRw);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  request<T = Record<string, unknown>>(line: string, into?: { buf: Uint8Array; offset: number; length: number }): HelperReply<T> {
    if (this.closed) throw new VcvError('VCV_ERR_BACKEND', 'xen helper (sync) is closed');
    try {
      fs.writeSync(this.reqFd, `${line}\n`);
    } catch (e) {
      throw new VcvError('VCV_ERR_BACKEND', `xen helper (sync) is gone: ${(e as Error).message}${this.stderrTail ? `: ${shortText(this.stderrTail)}` : ''}`, {}, { cause: e });
    }
    let reply: { json: unknown; payloadBytes: number } | { error: string; message: string } | null = null;
    while (!reply) {
      const n = fs.readSync(this.respFd, this.chunk, 0, this.chunk.length, null);
      if (n === 0) throw new VcvError('VCV_ERR_BACKEND', `xen helper (sync) exited${this.stderrTail ? `: ${shortText(this.stderrTail)}` : ''}`);
      const used = this.parser.feed(this.chunk.subarray(0, n), () => into ?? null, (r) => (reply = r));
      if (used !== n && reply) throw new VcvError('VCV_ERR_BACKEND', 'xen helper (sync) sent more than one reply');
    }
    const r = reply as { json: unknown; payloadBytes: number } | { error: string; message: string };
    if ('error' in r) throw helperError(r.error, r.message, line);
    return { json: r.json as T, payloadBytes: r.payloadBytes };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fs.writeSync(this.reqFd, 'quit\n');
    } catch {
      /* already gone */
    }
    fs.closeSync(this.reqFd);
    fs.closeSync(this.respFd);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    t.unref();
    this.child.once('exit', () => clearTimeout(t));
  }
}
