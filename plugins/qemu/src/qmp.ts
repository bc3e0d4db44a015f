/**
 * A QMP client of our own: a unix socket, the greeting, `qmp_capabilities`, commands with ids and
 * timeouts, asynchronous events, and a watcher that reconnects whenever QEMU (re)starts.
 *
 * QMP facts that shape this file: a server sends `{"QMP": …}` first and accepts nothing but
 * `qmp_capabilities` until negotiated; replies carry the `id` we sent; events (`GUEST_PANICKED`,
 * `SHUTDOWN`, …) reach only clients connected when they happen — so a watcher connects before the
 * crash and stays connected; when QEMU exits the socket closes and every pending command fails.
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { VcvError } from '@vicover/errors';

export interface QmpEvent {
  readonly event: string;
  readonly data: Record<string, unknown>;
  /** Wall-clock ms of the event as QEMU stamped it. */
  readonly at: number;
}

export interface QmpGreeting {
  readonly version?: { qemu?: { major: number; minor: number; micro: number }; package?: string };
  readonly capabilities?: readonly string[];
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
  command: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** One QMP connection. Emits `event` (QmpEvent) and `close`. */
export class QmpClient extends EventEmitter {
  private sock: net.Socket | null = null;
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  greeting: QmpGreeting | null = null;
  closed = false;

  private constructor(readonly path: string) {
    super();
  }

  /** Connect, read the greeting, negotiate capabilities. Fails at once if nothing listens. */
  static async connect(path: string, opts: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const c = new QmpClient(path);
    await c.open(opts.timeoutMs ?? 10_000);
    return c;
  }

  private open(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const sock = net.createConnection(this.path);
      this.sock = sock;
      let settled = false;
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        this.closed = true;
        reject(e);
      };
      const timer = setTimeout(() => fail(new VcvError('VCV_ERR_TIMEOUT', `QMP ${this.path}: no greeting within ${timeoutMs} ms`, { socket: this.path })), timeoutMs);
      sock.setEncoding('utf8');
      sock.once('error', (e) => fail(new VcvError('VCV_ERR_BACKEND', `QMP ${this.path}: cannot connect: ${e.message}`, { socket: this.path, errno: (e as NodeJS.ErrnoException).code }, { cause: e })));
      sock.on('data', (d: string) => this.onData(d));
      sock.on('close', () => {
        this.closed = true;
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new VcvError('VCV_ERR_BACKEND', `QMP ${this.path}: connection closed before ${p.command} answered`, { socket: this.path, command: p.command }));
          this.pending.delete(id);
        }
        if (!settled) fail(new VcvError('VCV_ERR_BACKEND', `QMP ${this.path}: closed during the handshake`, { socket: this.path }));
        this.emit('close');
      });
      this.once('greeting', () => {
        this.execute('qmp_capabilities', undefined, { timeoutMs })
          .then(() => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            sock.removeAllListeners('error');
            sock.on('error', () => undefined); // 'close' follows
            resolve();
          })
          .catch(fail);
      });
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue; // not ours to judge; QMP lines are always JSON
      }
      if (msg.QMP) {
        this.greeting = msg.QMP as QmpGreeting;
        this.emit('greeting');
      } else if (typeof msg.event === 'string') {
        const ts = msg.timestamp as { seconds?: number; microseconds?: number } | undefined;
        const at = ts && typeof ts.seconds === 'number' && ts.seconds > 0 ? ts.seconds * 1000 + Math.floor((ts.microseconds ?? 0) / 1000) : Date.now();
        this.emit('event', { event: msg.event, data: (msg.data as Record<string, unknown>) ?? {}, at } satisfies QmpEvent);
      } else if (msg.id !== undefined) {
        const id = String(msg.id);
        const p = this.pending.get(id);
        if (!p) continue;
        this.pending.delete(id);
        clearTimeout(p.timer);
        if (msg.error) {
          const err = msg.error as { class?: string; desc?: string };
          p.reject(new VcvError('VCV_ERR_BACKEND', `QMP ${p.command}: ${err.class ?? 'Error'}: ${err.desc ?? 'no description'}`, { socket: this.path, command: p.command, qmpClass: err.class }));
        } else p.resolve(msg.return);
      }
    }
  }

  /** Run a QMP command; resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed || !this.sock) return Promise.reject(new VcvError('VCV_ERR_BACKEND', `QMP ${this.path}: not connected (${command})`, { socket: this.path, command }));
    const id = String(this.nextId++);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VcvError('VCV_ERR_TIMEOUT', `QMP ${command}: no answer within ${timeoutMs} ms`, { socket: this.path, command, timeoutMs }));
      }, timeoutMs);
      timer.unref?.();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, command });
      this.sock!.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n');
    });
  }

  /** A human-monitor command through QMP (`info registers -a`, …); resolves with its text output. */
  hmp(commandLine: string, opts: { timeoutMs?: number } = {}): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine }, opts);
  }

  /** Resolves with the next event named `name` (or rejects after the timeout / on close). */
  waitEvent(name: string, opts: { timeoutMs?: number } = {}): Promise<QmpEvent> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name) return;
        done();
        resolve(e);
      };
      const onClose = () => {
        done();
        reject(new VcvError('VCV_ERR_BACKEND', `QMP ${this.path}: closed while waiting for ${name}`, { socket: this.path }));
      };
      const timer = setTimeout(() => {
        done();
        reject(new VcvError('VCV_ERR_TIMEOUT', `QMP ${this.path}: no ${name} within ${timeoutMs} ms`, { socket: this.path, timeoutMs }));
      }, timeoutMs);
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  /** Resolves when the connection is closed (QEMU exited or close() was called). */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((r) => this.once('close', () => r()));
  }

  close(): void {
    this.closed = true;
    this.sock?.destroy();
  }
}

/**
 * Keeps a QMP connection to one socket path: connects, and reconnects after QEMU exits or restarts
 * (retrying every `retryMs`). Emits `connected` (QmpClient), `disconnected`, `event` (QmpEvent).
 */
export class QmpWatcher extends EventEmitter {
  client: QmpClient | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private connecting = false;
  private lastError = '';

  constructor(
    readonly path: string,
    private readonly opts: { retryMs?: number; timeoutMs?: number; onError?: (message: string) => void } = {},
  ) {
    super();
  }

  start(): void {
    this.stopped = false;
    void this.attempt();
  }

  /** Resolves with a connected client, waiting up to timeoutMs for one. */
  async ready(timeoutMs: number): Promise<QmpClient> {
    if (this.client && !this.client.closed) return this.client;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('connected', onConnected);
        reject(new VcvError('VCV_ERR_TIMEOUT', `QMP ${this.path}: not connected within ${timeoutMs} ms${this.lastError ? ` (${this.lastError})` : ''}`, { socket: this.path }));
      }, timeoutMs);
      const onConnected = (c: QmpClient) => {
        clearTimeout(timer);
        resolve(c);
      };
      this.once('connected', onConnected);
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.attempt();
    }, this.opts.retryMs ?? 1000);
    this.timer.unref?.();
  }

  private async attempt(): Promise<void> {
    if (this.stopped || this.connecting || (this.client && !this.client.closed)) return;
    this.connecting = true;
    try {
      const c = await QmpClient.connect(this.path, { timeoutMs: this.opts.timeoutMs ?? 5000 });
      if (this.stopped) {
        c.close();
        return;
      }
      this.client = c;
      this.lastError = '';
      c.on('event', (e: QmpEvent) => this.emit('event', e));
      c.once('close', () => {
        if (this.client === c) this.client = null;
        this.emit('disconnected');
        this.schedule();
      });
      this.emit('connected', c);
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.lastError) this.opts.onError?.(msg);
      this.lastError = msg;
      this.schedule();
    } finally {
      this.connecting = false;
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.client?.close();
    this.client = null;
  }
}
