// Harness for real crashed Linux guests under QEMU/TCG (see docs/guests.md).
// Plain ESM, Node 20 built-ins only, no build step.
//
//   import { buildGuest, startGuest } from './guest.mjs';
//   const g = await startGuest({ name: 'demo', memMiB: 768, load: 'anon:100' });
//   try {
//     await g.waitReady();
//     await g.crash();                       // QMP GUEST_PANICKED
//     await g.dump('/tmp/demo.elf');         // dump-guest-memory, ELF, paging=false
//     await g.quit();
//   } finally { await g.dispose(); }         // kills QEMU if needed, removes /dev/shm file
//
// Every wait has a timeout; on any failure dispose() kills QEMU. A process 'exit' hook kills
// QEMU and removes RAM files of guests that were not disposed, and QEMU runs under
// `setpriv --pdeathsig KILL` so it dies with its parent even on SIGKILL.

import { spawn, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const GUEST_DIR = path.dirname(fileURLToPath(import.meta.url));
export const READY_LINE = 'VICOVER-READY';
export const PANIC_LINE = 'Kernel panic - not syncing: sysrq triggered crash';

/** @returns {string} the cache root: $VICOVER_CACHE or ~/.cache/vicover */
export function cacheRoot() {
  return process.env.VICOVER_CACHE || path.join(os.homedir(), '.cache', 'vicover');
}

/**
 * @typedef {object} GuestBuild
 * @property {string} kernelVersion
 * @property {string} kernelPackageVersion
 * @property {string} vmlinuz
 * @property {string} initrd
 * @property {string} disk
 * @property {number} datasetMiB
 * @property {number} cacheMiB
 * @property {string} dir
 */

/**
 * Run build.sh (cached, idempotent) and return its manifest.
 * @param {{abi?: number|string, datasetMiB?: number, cacheMiB?: number, timeoutMs?: number}} [opts]
 * @returns {Promise<GuestBuild>}
 */
export async function buildGuest(opts = {}) {
  const args = [];
  if (opts.abi != null) args.push('--abi', String(opts.abi));
  if (opts.datasetMiB != null) args.push('--dataset-mib', String(opts.datasetMiB));
  if (opts.cacheMiB != null) args.push('--cache-mib', String(opts.cacheMiB));
  const { stdout } = await execFileP('bash', [path.join(GUEST_DIR, 'build.sh'), ...args], {
    timeout: opts.timeoutMs ?? 900_000,
    maxBuffer: 16 << 20,
  });
  const dir = stdout.trim().split('\n').pop();
  const manifest = JSON.parse(await fsp.readFile(path.join(dir, 'manifest.json'), 'utf8'));
  return { ...manifest, dir };
}

/**
 * Create a private qcow2 overlay over the build's base disk, e.g. a disk shared by a crashed guest
 * and its recovery guest (pass it as {diskMode: 'shared', disk}). The base disk stays pristine.
 * @param {GuestBuild} build @param {string} file
 */
export async function createDiskOverlay(build, file) {
  await fsp.rm(file, { force: true });
  await execFileP('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', build.disk, '-F', 'raw', file]);
  return file;
}

// ---------------------------------------------------------------------------------------------
// Minimal QMP client

/** Reject after ms with a descriptive error. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class QmpClient {
  /** @type {net.Socket} */ #sock;
  #buf = '';
  #nextId = 1;
  /** @type {Map<string, {resolve: Function, reject: Function}>} */ #pending = new Map();
  /** @type {{event: string, data: any, timestamp: any, receivedAt: number}[]} */ events = [];
  /** @type {Set<Function>} */ #eventWaiters = new Set();
  greeting = null;
  closed = false;

  /**
   * Connect (retrying until the socket exists), read the greeting, negotiate capabilities.
   * @param {string} socketPath
   * @param {{timeoutMs?: number}} [opts]
   */
  static async connect(socketPath, opts = {}) {
    const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
    let lastErr;
    while (Date.now() < deadline) {
      try {
        const c = new QmpClient();
        await c.#open(socketPath, Math.max(1, deadline - Date.now()));
        return c;
      } catch (e) {
        lastErr = e;
        await sleep(100);
      }
    }
    throw new Error(`QMP connect ${socketPath} failed: ${lastErr?.message ?? 'timeout'}`);
  }

  async #open(socketPath, ms) {
    const sock = net.createConnection(socketPath);
    this.#sock = sock;
    let greetingResolve;
    const greeting = new Promise((r) => (greetingResolve = r));
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      this.#buf += d;
      let i;
      while ((i = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, i).trim();
        this.#buf = this.#buf.slice(i + 1);
        if (!line) continue;
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.QMP) greetingResolve(msg);
        else if (msg.event) {
          const ev = { ...msg, receivedAt: performance.now() };
          this.events.push(ev);
          for (const w of this.#eventWaiters) w(ev);
        } else if (msg.id != null && this.#pending.has(String(msg.id))) {
          const p = this.#pending.get(String(msg.id));
          this.#pending.delete(String(msg.id));
          if (msg.error) p.reject(new Error(`QMP ${msg.error.class}: ${msg.error.desc}`));
          else p.resolve(msg.return);
        }
      }
    });
    const onClose = () => {
      this.closed = true;
      for (const p of this.#pending.values()) p.reject(new Error('QMP connection closed'));
      this.#pending.clear();
    };
    sock.on('close', onClose);
    try {
      await withTimeout(
        new Promise((resolve, reject) => {
          sock.once('connect', resolve);
          sock.once('error', reject);
        }),
        ms,
        'QMP socket connect',
      );
      sock.on('error', () => {}); // 'close' follows and rejects pending commands
      this.greeting = await withTimeout(greeting, ms, 'QMP greeting');
      await this.execute('qmp_capabilities', undefined, { timeoutMs: ms });
    } catch (e) {
      sock.destroy();
      throw e;
    }
  }

  /**
   * @param {string} command
   * @param {object} [args]
   * @param {{timeoutMs?: number}} [opts]
   */
  execute(command, args, opts = {}) {
    if (this.closed) return Promise.reject(new Error('QMP connection closed'));
    const id = String(this.#nextId++);
    const p = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    this.#sock.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n');
    return withTimeout(p, opts.timeoutMs ?? 30_000, `QMP ${command}`).finally(() => this.#pending.delete(id));
  }

  /** Human monitor command through QMP. */
  hmp(commandLine, opts) {
    return this.execute('human-monitor-command', { 'command-line': commandLine }, opts);
  }

  /**
   * Resolve with the first event named `name` received at or after index `since` in `events`.
   * @param {string} name
   * @param {{timeoutMs?: number, since?: number}} [opts]
   */
  waitEvent(name, opts = {}) {
    const since = opts.since ?? 0;
    const seen = this.events.slice(since).find((e) => e.event === name);
    if (seen) return Promise.resolve(seen);
    let waiter;
    const p = new Promise((resolve) => {
      waiter = (ev) => ev.event === name && resolve(ev);
      this.#eventWaiters.add(waiter);
    });
    return withTimeout(p, opts.timeoutMs ?? 30_000, `QMP event ${name}`).finally(() =>
      this.#eventWaiters.delete(waiter),
    );
  }

  close() {
    this.closed = true;
    this.#sock?.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Guests

/** Guests not yet disposed: killed (and their RAM files removed) when the process exits. */
const live = new Set();
process.on('exit', () => {
  for (const g of live) g._killSync();
});

function haveSetprivPdeathsig() {
  try {
    return execFileSync('setpriv', ['--help'], { encoding: 'utf8' }).includes('--pdeathsig');
  } catch {
    return false;
  }
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/**
 * @typedef {object} GuestOptions
 * @property {string} [name]               label; also used in file names
 * @property {string} [dir]                where serial.log, qemu.log and the disk overlay go (default: a temp dir)
 * @property {number} [memMiB]             guest RAM (default 512)
 * @property {number} [smp]                vCPUs (default 2)
 * @property {string} [cpu]                'max' (5-level paging under TCG) or 'max,la57=off' (4-level; default)
 * @property {boolean} [vmcoreinfoDevice]  add -device vmcoreinfo (default true)
 * @property {string} [load]               vicover.load, e.g. 'anon:200,tmpfs:100,cache:150'
 * @property {boolean|'dhcp'} [httpd]      start busybox httpd in the guest (virtio-net + user net)
 * @property {number} [hostfwdPort]        host port forwarded to guest :80 (default: a free port)
 * @property {boolean} [stamp]             vicover.stamp=1
 * @property {string} [warm]               vicover.warm=PATH
 * @property {number} [warmSecs]           vicover.warm_secs=S: re-read `warm` with O_DIRECT for S seconds
 * @property {number} [crashAfter]         vicover.crash_after=S
 * @property {string} [extraAppend]        appended to the kernel command line
 * @property {string[]} [extraArgs]        extra QEMU arguments
 * @property {'overlay'|'snapshot'|'shared'} [diskMode] overlay: private qcow2 over the base disk (default);
 *                                         snapshot: -snapshot semantics; shared: use `disk` read-write
 * @property {string} [disk]               disk image for diskMode 'shared' (raw or qcow2, by extension)
 * @property {string} [ramPath]            RAM file (default /dev/shm/vcvguest-NAME-PID-N.ram)
 * @property {GuestBuild} [build]          result of buildGuest() (built on demand otherwise)
 * @property {number} [readyTimeoutMs]     default 300 s
 * @property {string} [qemu]               QEMU binary (default qemu-system-x86_64)
 */

let seq = 0;

/**
 * Remove /dev/shm/vcvguest-*-PID-N.ram files and $TMPDIR/vcvg-PID-* run directories left by a
 * harness process that died without cleaning up (e.g. SIGKILL; QEMU itself dies with it through
 * --pdeathsig). Removed only when PID is gone and no running process names the path on its
 * command line. Called by startGuest().
 * @returns {string[]} removed paths
 */
export function sweepStaleRamFiles(shm = '/dev/shm') {
  const removed = [];
  let names;
  try {
    names = fs.readdirSync(shm);
  } catch {
    return removed;
  }
  const stale = names.filter((n) => {
    const m = /^vcvguest-.*-(\d+)-\d+\.ram$/.exec(n);
    if (!m || Number(m[1]) === process.pid) return false;
    try {
      process.kill(Number(m[1]), 0);
      return false;
    } catch (e) {
      return e.code === 'ESRCH';
    }
  });
  const cmdlines = [];
  for (const pid of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      cmdlines.push(fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1'));
    } catch {
      /* gone */
    }
  }
  for (const n of stale) {
    const p = path.join(shm, n);
    if (cmdlines.some((c) => c.includes(p))) continue;
    fs.rmSync(p, { force: true });
    removed.push(p);
  }
  // run directories (sockets, logs, overlay) of dead harness processes
  for (const n of fs.readdirSync(os.tmpdir())) {
    const m = /^vcvg-(\d+)-\w+$/.exec(n);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if (e.code !== 'ESRCH') continue;
      const p = path.join(os.tmpdir(), n);
      if (cmdlines.some((c) => c.includes(p))) continue;
      fs.rmSync(p, { recursive: true, force: true });
      removed.push(p);
    }
  }
  return removed;
}

/**
 * Start a guest. Returns once QEMU runs and QMP is connected (before the guest is ready).
 * @param {GuestOptions} [opts]
 */
export async function startGuest(opts = {}) {
  const build = opts.build ?? (await buildGuest());
  sweepStaleRamFiles();
  const g = new Guest(opts, build);
  try {
    await g._start();
  } catch (e) {
    await g.dispose();
    throw e;
  }
  return g;
}

export class Guest {
  /** @param {GuestOptions} opts @param {GuestBuild} build */
  constructor(opts, build) {
    this.opts = opts;
    this.build = build;
    this.name = (opts.name ?? 'guest').replace(/[^A-Za-z0-9_.-]/g, '_');
    this.memMiB = opts.memMiB ?? 512;
    this.cpu = opts.cpu ?? 'max,la57=off';
    this.ramPath = opts.ramPath ?? `/dev/shm/vcvguest-${this.name}-${process.pid}-${seq++}.ram`;
    /** @type {import('node:child_process').ChildProcess|null} */ this.proc = null;
    /** @type {QmpClient|null} */ this.qmp = null;
    this.exited = null; // {code, signal} once QEMU has exited
    this.timings = {};
    this.ready = null;
    this.meminfo = null;
    this.hostfwdPort = null;
    this._cmdSock = null;
    this._cmdBuf = '';
    this._cmdWaiters = [];
  }

  get serialLog() {
    return path.join(this.dir, 'serial.log');
  }

  /** Kernel command line for the options. */
  append() {
    const o = this.opts;
    // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can fail
    // ("IO-APIC + timer doesn't work") and panic the boot; the check is meaningless in a VM.
    const parts = ['console=ttyS0', 'panic=0', 'no_timer_check', `vicover.name=${this.name}`];
    if (o.load) parts.push(`vicover.load=${o.load}`);
    if (o.warm) parts.push(`vicover.warm=${o.warm}`);
    if (o.warmSecs) parts.push(`vicover.warm_secs=${o.warmSecs}`);
    if (o.httpd) parts.push(`vicover.httpd=${o.httpd === 'dhcp' ? 'dhcp' : 1}`);
    if (o.stamp) parts.push('vicover.stamp=1');
    if (o.crashAfter) parts.push(`vicover.crash_after=${o.crashAfter}`);
    if (o.extraAppend) parts.push(o.extraAppend);
    return parts.join(' ');
  }

  async _start() {
    const o = this.opts;
    // short (unix socket paths ≤ 107 bytes); the PID lets sweepStaleRamFiles() find leftovers
    this.runDir = await fsp.mkdtemp(path.join(os.tmpdir(), `vcvg-${process.pid}-`));
    this.dir = o.dir ?? this.runDir;
    await fsp.mkdir(this.dir, { recursive: true });
    this.qmpPath = path.join(this.runDir, 'qmp.sock');
    this.cmdPath = path.join(this.runDir, 'cmd.sock');
    await fsp.rm(this.serialLog, { force: true });
    if (fs.existsSync(this.ramPath)) throw new Error(`RAM file ${this.ramPath} already exists`);

    const mode = o.diskMode ?? 'overlay';
    let drive;
    if (mode === 'overlay') {
      this.overlay = await createDiskOverlay(this.build, path.join(this.dir, `${this.name}.disk.qcow2`));
      drive = `file=${this.overlay},format=qcow2`;
    } else if (mode === 'snapshot') {
      drive = `file=${this.build.disk},format=raw,snapshot=on`;
    } else {
      const disk = o.disk ?? this.build.disk;
      drive = `file=${disk},format=${disk.endsWith('.qcow2') ? 'qcow2' : 'raw'}`;
    }

    const m = `${this.memMiB}M`;
    const args = [
      '-accel', 'tcg',
      '-cpu', this.cpu,
      '-smp', String(o.smp ?? 2),
      '-m', m,
      '-object', `memory-backend-file,id=ram,size=${m},mem-path=${this.ramPath},share=on`,
      '-machine', 'pc,memory-backend=ram',
      '-kernel', this.build.vmlinuz,
      '-initrd', this.build.initrd,
      '-append', this.append(),
      '-device', 'pvpanic',
      '-action', 'panic=pause',
      '-drive', `${drive},if=none,id=d0`,
      '-device', 'virtio-blk-pci,drive=d0',
      '-qmp', `unix:${this.qmpPath},server=on,wait=off`,
      '-serial', `file:${this.serialLog}`,
      '-serial', `unix:${this.cmdPath},server=on,wait=off`,
      '-display', 'none',
      '-nodefaults',
      '-no-user-config',
    ];
    if (o.vmcoreinfoDevice ?? true) args.push('-device', 'vmcoreinfo');
    if (o.httpd) {
      this.hostfwdPort = o.hostfwdPort ?? (await freePort());
      args.push(
        '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${this.hostfwdPort}-:80`,
        '-device', 'virtio-net-pci,netdev=n0,romfile=',
      );
    }
    if (o.extraArgs) args.push(...o.extraArgs);
    this.qemuArgs = args;

    const qemu = o.qemu ?? 'qemu-system-x86_64';
    const [cmd, argv] = haveSetprivPdeathsig() ? ['setpriv', ['--pdeathsig', 'KILL', '--', qemu, ...args]] : [qemu, args];
    const logFd = fs.openSync(path.join(this.dir, 'qemu.log'), 'w');
    this.timings.spawnAt = performance.now();
    this.proc = spawn(cmd, argv, { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    live.add(this);
    this._exitPromise = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exited = { code, signal };
        resolve(this.exited);
      });
      this.proc.once('error', (err) => {
        this.exited = { code: null, signal: null, error: err };
        resolve(this.exited);
      });
    });
    // Connect QMP right away: events reach only connected clients.
    this.qmp = await Promise.race([
      QmpClient.connect(this.qmpPath, { timeoutMs: 20_000 }),
      this._exitPromise.then(async (e) => {
        throw new Error(`QEMU exited during start-up (${JSON.stringify(e)}): ${await this.qemuLog()}`);
      }),
    ]);
  }

  async qemuLog() {
    return (await fsp.readFile(path.join(this.dir, 'qemu.log'), 'utf8').catch(() => '')).trim();
  }

  /**
   * Wait for the ready line on ttyS0. Fails early if QEMU exits or the guest panics first.
   * @param {{timeoutMs?: number}} [opts]
   * @returns {Promise<{name: string, boot: number, token: string, uptime: number, bootSeconds: number}>}
   */
  async waitReady(opts = {}) {
    const timeoutMs = opts.timeoutMs ?? this.opts.readyTimeoutMs ?? 300_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = await fsp.readFile(this.serialLog, 'utf8').catch(() => '');
      const match = log.match(/^VICOVER-READY[^\r\n]*(?=\r?\n)/m); // a complete line only
      if (match) {
        const line = match[0];
        this.timings.readyAt = performance.now();
        const kv = Object.fromEntries(
          line.trim().split(/\s+/).slice(1).map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
        );
        const mi = log.split('\n').find((l) => l.startsWith('VICOVER-MEMINFO'));
        if (mi) {
          this.meminfo = Object.fromEntries(
            mi.trim().split(/\s+/).slice(1).map((p) => {
              const [k, v] = p.split('=');
              return [k, Number(v)];
            }),
          );
        }
        this.ready = {
          name: kv.name,
          boot: Number(kv.boot),
          token: kv.token,
          uptime: Number(kv.uptime),
          bootSeconds: (this.timings.readyAt - this.timings.spawnAt) / 1000,
        };
        return this.ready;
      }
      const tail = () => `\n--- last lines of ${this.serialLog} ---\n${log.split('\n').slice(-15).join('\n')}`;
      if (this.exited) throw new Error(`QEMU exited before ready (${JSON.stringify(this.exited)}): ${await this.qemuLog()}${tail()}`);
      if (log.includes('Kernel panic')) throw new Error(`guest panicked before ready${tail()}`);
      if (Date.now() > deadline) throw new Error(`timeout after ${timeoutMs} ms waiting for ${READY_LINE}${tail()}`);
      await sleep(200);
    }
  }

  async #cmdConnect(timeoutMs) {
    if (this._cmdSock && !this._cmdSock.destroyed) return this._cmdSock;
    const sock = await withTimeout(
      new Promise((resolve, reject) => {
        const s = net.createConnection(this.cmdPath);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      }),
      timeoutMs,
      'connect to ttyS1 socket',
    );
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (d) => {
      this._cmdBuf += d;
      let i;
      while ((i = this._cmdBuf.indexOf('\n')) >= 0) {
        const line = this._cmdBuf.slice(0, i).replace(/\r$/, '');
        this._cmdBuf = this._cmdBuf.slice(i + 1);
        const i2 = this._cmdWaiters.findIndex((w) => w.match(line));
        if (i2 >= 0) this._cmdWaiters.splice(i2, 1)[0].resolve(line); // stray lines are dropped
      }
    });
    this._cmdSock = sock;
    return sock;
  }

  /**
   * Send one command line on ttyS1 and wait for its "OK …"/"ERR …" reply.
   * @param {string} line  ping | sync | stamp VALUE | meminfo | drop_caches | crash
   * @param {{timeoutMs?: number}} [opts]
   */
  async command(line, opts = {}) {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const sock = await this.#cmdConnect(timeoutMs);
    const verb = line.trim().split(/\s+/)[0];
    let waiter;
    const reply = new Promise((resolve) => {
      waiter = { match: (l) => l.startsWith(`OK ${verb}`) || l.startsWith(`ERR ${verb}`) || l.startsWith('ERR unknown'), resolve };
      this._cmdWaiters.push(waiter);
    });
    sock.write(line + '\n');
    const r = await withTimeout(reply, timeoutMs, `guest command '${line}'`).finally(() => {
      const i = this._cmdWaiters.indexOf(waiter);
      if (i >= 0) this._cmdWaiters.splice(i, 1);
    });
    if (!r.startsWith('OK')) throw new Error(`guest command '${line}' failed: ${r}`);
    return r;
  }

  /**
   * Crash the guest (sysrq c via ttyS1) and wait for QMP GUEST_PANICKED.
   * @param {{timeoutMs?: number}} [opts]
   * @returns {Promise<{crashToEventSeconds: number, event: any}>}
   */
  async crash(opts = {}) {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    if (!this.qmp || this.qmp.closed) throw new Error('QMP not connected');
    // A round trip first: proves the guest's command loop is reading ttyS1.
    await this.command('ping', { timeoutMs });
    const since = this.qmp.events.length;
    const sock = await this.#cmdConnect(timeoutMs);
    const ev = this.qmp.waitEvent('GUEST_PANICKED', { timeoutMs, since });
    this.timings.crashAt = performance.now();
    sock.write('crash\n');
    const event = await ev;
    this.timings.panickedAt = event.receivedAt;
    return { crashToEventSeconds: (event.receivedAt - this.timings.crashAt) / 1000, event };
  }

  /** QMP query-status. */
  status() {
    return this.qmp.execute('query-status');
  }

  /** HMP `info registers -a` (all vCPUs, incl. CR3). */
  registers() {
    return this.qmp.hmp('info registers -a');
  }

  /**
   * QMP dump-guest-memory to `file` (ELF, paging=false by default). Synchronous in QEMU.
   * @param {string} file
   * @param {{format?: 'elf'|'kdump-zlib'|'kdump-lzo'|'kdump-snappy', timeoutMs?: number}} [opts]
   * @returns {Promise<{seconds: number}>}
   */
  async dump(file, opts = {}) {
    const t0 = performance.now();
    await fsp.rm(file, { force: true });
    const args = { paging: false, protocol: `file:${path.resolve(file)}` };
    if (opts.format && opts.format !== 'elf') args.format = opts.format;
    await this.qmp.execute('dump-guest-memory', args, {
      timeoutMs: opts.timeoutMs ?? 120_000 + this.memMiB * 100,
    });
    return { seconds: (performance.now() - t0) / 1000 };
  }

  /** QMP quit, then wait for QEMU to exit (SIGKILL after the timeout). The RAM file stays. */
  async quit(opts = {}) {
    if (this.exited) return this.exited;
    try {
      await this.qmp.execute('quit', undefined, { timeoutMs: 10_000 });
    } catch {
      /* QEMU may close the socket before answering */
    }
    return this.#waitExit(opts.timeoutMs ?? 20_000);
  }

  async #waitExit(ms) {
    try {
      return await withTimeout(this._exitPromise, ms, 'QEMU exit');
    } catch {
      this.proc?.kill('SIGKILL');
      return withTimeout(this._exitPromise, 10_000, 'QEMU exit after SIGKILL');
    }
  }

  /** SIGKILL QEMU and wait for it. */
  async kill() {
    if (!this.proc || this.exited) return;
    this.proc.kill('SIGKILL');
    await this.#waitExit(10_000);
  }

  /**
   * Move the RAM file (after quit) to `dest`, sparsely. Returns seconds taken.
   * @param {string} dest
   */
  async takeRam(dest) {
    if (!this.exited) throw new Error('takeRam: QEMU still running; quit() first');
    const t0 = performance.now();
    await fsp.rm(dest, { force: true });
    await execFileP('cp', ['--sparse=always', this.ramPath, dest], { timeout: 600_000 });
    await fsp.rm(this.ramPath, { force: true });
    this.ramTaken = true;
    return (performance.now() - t0) / 1000;
  }

  /**
   * Kill QEMU if still running; remove the RAM file (unless keepRam), sockets and the overlay.
   * @param {{keepRam?: boolean, keepOverlay?: boolean}} [opts]
   */
  async dispose(opts = {}) {
    try {
      this.qmp?.close();
      this._cmdSock?.destroy();
      await this.kill();
    } finally {
      if (!opts.keepRam) await fsp.rm(this.ramPath, { force: true });
      if (this.overlay && !opts.keepOverlay) await fsp.rm(this.overlay, { force: true });
      if (this.runDir) {
        // keep serial.log / qemu.log if they live in the caller's dir
        if (this.dir === this.runDir && !opts.keepLogs) await fsp.rm(this.runDir, { recursive: true, force: true });
        else {
          await fsp.rm(this.qmpPath, { force: true });
          await fsp.rm(this.cmdPath, { force: true });
          await fsp.rmdir(this.runDir).catch(() => {});
        }
      }
      live.delete(this);
    }
  }

  _killSync() {
    try {
      if (this.proc && !this.exited) this.proc.kill('SIGKILL');
    } catch {
      /* ignore */
    }
    try {
      fs.rmSync(this.ramPath, { force: true });
      if (this.runDir && this.dir === this.runDir) fs.rmSync(this.runDir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  }
}
