/**
 * The QEMU/KVM backend (DESIGN.md §2): watches running QEMU instances over QMP, turns
 * `GUEST_PANICKED` into crash events, reads CPU state, serves guest memory from the RAM file, gives
 * memory back by punching holes in it, and starts/grows/throttles recovery VMs on the same disk.
 *
 * Crashed VM, in order: GUEST_PANICKED (pvpanic, -action panic=pause) → capture: HMP `info registers
 * -a` → NT_PRSTATUS notes, then `quit` (frees the disk's write lock; QEMU never unlinks the RAM file)
 * → openMemory: pread on the RAM file → release: `fallocate --punch-hole` per dumped chunk (freed
 * bytes measured with stat) → destroy: remove the RAM file.
 *
 * Recovery VM: the crashed VM's command line (from /proc/PID/cmdline, read while it ran, or given in
 * the options) with new RAM files, its own QMP socket and pidfile; when it starts with less than the
 * full memory, boot RAM plus a virtio-mem device whose `requested-size` grows (qom-set) as memory is
 * handed over. See docs/qemu.md and docs/recovery.md.
 */
import { execa } from 'execa';
import { promises as fsp, openSync, closeSync } from 'node:fs';
import * as path from 'node:path';
import { openRawImage } from '@vicover/image';
import { VcvError, wrapError } from '@vicover/errors';
import type {
  Backend,
  BackendContext,
  CaptureResult,
  IoLimits,
  IoStats,
  Logger,
  MemorySource,
  PhysRange,
  StartVmOptions,
  VmDefinition,
  VmHandle,
  VmRef,
} from '@vicover/core';
import { QmpClient, QmpWatcher, type QmpEvent } from './qmp.js';
import { cpuNotes, parseInfoRegisters } from './registers.js';
import { allocatedBytes, fileRangesOf, punchHoles } from './ramfile.js';
import { alive, cmdlineMentions, findQemuByArg, readPidfile, readProc, waitExit } from './proc.js';
import { consoleFileOf, drivesOf, endpointsOf as argvEndpoints, parseArgv, qmpSocketsOf, ramOf, recoveryArgv, safeName, VMEM_DEVICE_ID, type DriveInfo } from './argv.js';
import { followFile } from '@vicover/hostutil';
import type { QemuOptions, VmOptions } from './options.js';

const MiB = 1024 * 1024;
/**
 * Linux x86-64 hot-plugs memory in blocks of 128 MiB (on guests below 64 GiB): the virtio-mem region is
 * rounded up to it, or the last partial block would stay unusable ("the alignment of the physical end
 * address can make some memory unusable").
 */
const GUEST_MEMORY_BLOCK = 128 * MiB;

/** How to start a VM again (what definitionOf returns; strategies pass it back to startVm). */
export interface QemuDefinition {
  readonly backend: 'qemu';
  readonly vm: string;
  /** QEMU binary. */
  readonly binary: string;
  /** Arguments after the binary. */
  readonly argv: readonly string[];
  readonly qmp: string;
  readonly ramFile: string;
  readonly memoryBytes: number;
  readonly disk?: string;
  /** Where the command line came from. */
  readonly source: 'options' | 'pidfile' | 'proc-scan';
  readonly pid?: number;
  readonly readAt: string;
}

type Phase = 'watching' | 'crashed' | 'captured';

interface VmState {
  readonly cfg: VmOptions;
  readonly ref: VmRef;
  readonly log: Logger;
  watcher: QmpWatcher | null;
  pid: number | null;
  def: QemuDefinition | null;
  phase: Phase;
}

/** A recovery VM this backend started (or adopted after a daemon restart). */
interface RecoveryState {
  readonly id: string;
  readonly name: string;
  readonly vm: string;
  pid: number;
  readonly qmpPath: string;
  readonly pidfile: string;
  readonly files: { readonly boot: string; readonly vmem: string | null };
  readonly bootBytes: number;
  readonly vmemBytes: number;
  readonly blockBytes: number;
  pluggedBytes: number;
  readonly drive: DriveInfo['ref'] | null;
  readonly endpoints: Record<string, string>;
  readonly consoleLog: string | null;
  readonly qemuLog: string;
  readonly baseline: { bps?: number; iops?: number };
  readonly startedAt: string;
}

function isDefinition(d: VmDefinition): d is VmDefinition & QemuDefinition {
  return d.backend === 'qemu' && typeof d.binary === 'string' && Array.isArray(d.argv) && typeof d.memoryBytes === 'number';
}

function alignDown(n: number, to: number): number {
  return Math.floor(n / to) * to;
}

function tail(text: string, lines = 12): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

export class QemuBackend implements Backend {
  readonly name = 'qemu';
  readonly growGranularityBytes: number;
  private readonly vms = new Map<string, VmState>();
  private readonly recoveries = new Map<string, RecoveryState>();
  private readonly recoveryQmp = new Map<string, QmpClient>();
  private ctx: BackendContext | null = null;
  private stateDirReady: Promise<void> | null = null;

  constructor(
    private readonly o: QemuOptions,
    private readonly log: Logger,
  ) {
    this.growGranularityBytes = o.blockSizeMiB * MiB;
    for (const cfg of o.vms) {
      if (this.vms.has(cfg.name)) throw new VcvError('VCV_ERR_CONFIG_INVALID', `qemu: two VMs are named "${cfg.name}"`, { plugin: 'qemu' });
      this.vms.set(cfg.name, {
        cfg,
        ref: Object.freeze({ id: cfg.name, name: cfg.name, memoryBytes: cfg.memoryMiB * MiB }),
        log: log.child({ vm: cfg.name }),
        watcher: null,
        pid: null,
        def: null,
        phase: 'watching',
      });
    }
  }

  // ── helpers ──────────────────────────────────────────────────────────────────

  private state(vm: VmRef): VmState {
    const s = this.vms.get(vm.id) ?? this.vms.get(vm.name);
    if (!s) throw new VcvError('VCV_ERR_BACKEND', `qemu: unknown VM "${vm.name}" (not in the plugin's vms list)`, { vm: vm.name });
    return s;
  }

  private ensureStateDir(): Promise<void> {
    this.stateDirReady ??= (async () => {
      await fsp.mkdir(this.o.stateDir, { recursive: true, mode: 0o700 }).catch((e) => {
        throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `qemu: cannot create the state directory ${this.o.stateDir}`);
      });
    })();
    return this.stateDirReady;
  }

  private defFile(vm: string): string {
    return path.join(this.o.stateDir, `${safeName(vm)}.definition.json`);
  }

  private async writeJson(file: string, data: unknown): Promise<void> {
    await this.ensureStateDir();
    const tmp = `${file}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
    await fsp.rename(tmp, file);
  }

  /** Find the VM's QEMU process and read how it was started (while it runs: /proc disappears with it). */
  private async learnDefinition(s: VmState): Promise<void> {
    const cfg = s.cfg;
    let pid: number | null = null;
    let source: QemuDefinition['source'] = 'options';
    if (cfg.pidfile) {
      pid = await readPidfile(cfg.pidfile);
      if (pid && !(await cmdlineMentions(pid, cfg.qmp))) pid = null;
      if (pid) source = 'pidfile';
    }
    if (!pid) {
      const p = await findQemuByArg(cfg.qmp);
      if (p) {
        pid = p.pid;
        source = 'proc-scan';
      }
    }
    s.pid = pid;
    let binary: string | undefined;
    let argv: readonly string[] | undefined;
    if (cfg.argv) {
      binary = cfg.argv[0]!;
      argv = cfg.argv.slice(1);
      source = 'options';
    } else if (pid) {
      const p = await readProc(pid);
      if (p) {
        binary = p.exe ?? p.argv0;
        argv = p.argv;
      }
    }
    if (!binary || !argv) {
      s.log.warn({ qmp: cfg.qmp }, 'qemu: cannot find the QEMU process of this VM (give pidfile or argv): recovery VMs cannot be started from it');
      return;
    }
    const args = parseArgv(argv);
    const ram = ramOf(args);
    if (!ram) {
      s.log.warn('qemu: the VM has no memory-backend-file named by -machine memory-backend=: its memory cannot be read after a crash');
    } else {
      if (path.resolve(ram.memPath) !== path.resolve(cfg.ramFile)) {
        s.log.warn({ ramFile: cfg.ramFile, memPath: ram.memPath }, 'qemu: the configured ramFile is not the mem-path of the running VM');
      }
      if (!ram.share) s.log.warn('qemu: the RAM backend has no share=on: the RAM file does not hold guest memory');
      if (ram.sizeBytes !== s.ref.memoryBytes) s.log.warn({ configured: s.ref.memoryBytes, actual: ram.sizeBytes }, 'qemu: memoryMiB differs from the running VM');
    }
    if (!qmpSocketsOf(args).some((q) => path.resolve(q) === path.resolve(cfg.qmp))) {
      s.log.debug('qemu: the QMP socket is not on the command line (an explicit argv?)');
    }
    s.def = Object.freeze({
      backend: 'qemu',
      vm: cfg.name,
      binary: this.o.binary ?? binary,
      argv: Object.freeze([...argv]),
      qmp: cfg.qmp,
      ramFile: cfg.ramFile,
      memoryBytes: s.ref.memoryBytes,
      disk: cfg.disk,
      source,
      pid: pid ?? undefined,
      readAt: new Date().toISOString(),
    });
    await this.writeJson(this.defFile(cfg.name), s.def).catch((e) => s.log.warn({ err: e }, 'qemu: cannot persist the VM definition'));
  }

  private async loadPersistedDefinition(s: VmState): Promise<QemuDefinition | null> {
    try {
      const d = JSON.parse(await fsp.readFile(this.defFile(s.cfg.name), 'utf8')) as QemuDefinition;
      return isDefinition(d as unknown as VmDefinition) ? d : null;
    } catch {
      return null;
    }
  }

  private onConnected(s: VmState, c: QmpClient): void {
    s.log.info({ qmp: s.cfg.qmp, qemu: c.greeting?.version?.qemu }, 'qemu: attached (QMP connected)');
    void (async () => {
      if (s.phase !== 'watching') {
        s.log.error({ qmp: s.cfg.qmp }, 'qemu: a QEMU answers on the crashed VM\'s QMP socket while its crash is being handled; if it uses the same RAM file, the evidence is being overwritten');
        return;
      }
      await this.learnDefinition(s).catch((e) => s.log.warn({ err: e }, 'qemu: reading the VM definition failed'));
      // A crash that happened while nobody listened: QEMU still sits in guest-panicked.
      const st = await c.execute<{ status: string }>('query-status', undefined, { timeoutMs: this.o.timeouts.qmpMs }).catch(() => null);
      if (st?.status === 'guest-panicked') this.reportCrash(s, Date.now(), 'GUEST_PANICKED (found at attach: status guest-panicked)');
    })();
  }

  private onEvent(s: VmState, e: QmpEvent): void {
    if (e.event === 'GUEST_PANICKED') {
      const action = (e.data.action as string | undefined) ?? '?';
      this.reportCrash(s, e.at, `GUEST_PANICKED (${action})`);
    } else if (e.event === 'SHUTDOWN' || e.event === 'STOP' || e.event === 'RESUME') {
      s.log.debug({ event: e.event, data: e.data }, 'qemu: event');
    }
  }

  private reportCrash(s: VmState, at: number, reason: string): void {
    if (s.phase !== 'watching') return;
    s.phase = 'crashed';
    s.log.warn({ reason }, `qemu: ${s.cfg.name} crashed`);
    this.ctx?.onCrash({ vm: s.ref, at, reason });
  }

  // ── Backend: watching ──────────────────────────────────────────────────────

  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
    await this.ensureStateDir();
    for (const s of this.vms.values()) {
      if (s.watcher) continue;
      const w = new QmpWatcher(s.cfg.qmp, {
        retryMs: this.o.reconnectMs,
        timeoutMs: this.o.timeouts.qmpMs,
        onError: (m) => s.log.debug({ qmp: s.cfg.qmp }, `qemu: QMP not reachable yet: ${m}`),
      });
      w.on('connected', (c: QmpClient) => this.onConnected(s, c));
      w.on('disconnected', () => s.log.info('qemu: QMP disconnected (QEMU exited); will reconnect when it runs again'));
      w.on('event', (e: QmpEvent) => this.onEvent(s, e));
      s.watcher = w;
      w.start();
    }
  }

  async stop(): Promise<void> {
    for (const s of this.vms.values()) {
      s.watcher?.stop();
      s.watcher = null;
    }
    for (const c of this.recoveryQmp.values()) c.close();
    this.recoveryQmp.clear();
    this.ctx = null;
  }

  async list(): Promise<readonly VmRef[]> {
    return [...this.vms.values()].map((s) => s.ref);
  }

  /** Wait until the VM's QMP is connected (tests, tools). */
  async attached(vm: string, timeoutMs = 30_000): Promise<void> {
    const s = this.state({ id: vm, name: vm, memoryBytes: 0 });
    if (!s.watcher) throw new VcvError('VCV_ERR_BACKEND', 'qemu: the backend is not started');
    await s.watcher.ready(timeoutMs);
    // The definition is read right after connecting.
    const deadline = Date.now() + timeoutMs;
    while (!s.def && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }

  // ── Backend: the crashed VM ──────────────────────────────────────────────────

  async capture(vm: VmRef): Promise<CaptureResult> {
    const s = this.state(vm);
    const c = s.watcher?.client ?? null;
    const info: Record<string, unknown> = { source: 'HMP info registers -a', qmp: s.cfg.qmp };
    let notes: CaptureResult['cpuNotes'] = [];
    if (c && !c.closed) {
      const st = await c.execute<{ status: string }>('query-status', undefined, { timeoutMs: this.o.timeouts.qmpMs }).catch(() => null);
      info.status = st?.status;
      try {
        const text = await c.hmp('info registers -a', { timeoutMs: this.o.timeouts.qmpMs });
        const cpus = parseInfoRegisters(text);
        notes = cpuNotes(cpus);
        info.cpus = cpus.length;
        info.cr3 = cpus.map((x) => `0x${x.cr3.toString(16)}`);
        info.rip = cpus.map((x) => `0x${(x.regs.rip ?? 0n).toString(16)}`);
      } catch (e) {
        // The memory is what matters: a dump without CPU notes beats no dump.
        info.error = `CPU state not read: ${(e as Error).message}`;
        s.log.warn({ err: e }, 'qemu: reading the CPU state failed; the dump will have no CPU notes');
      }
    } else {
      info.error = 'QMP not connected: QEMU exited before its CPU state could be read';
      s.log.warn('qemu: QEMU is gone; the dump will have no CPU notes');
    }
    if (!s.def) s.def = await this.loadPersistedDefinition(s);
    const t0 = performance.now();
    await this.quitCrashed(s, c);
    info.quitSeconds = (performance.now() - t0) / 1000;
    s.phase = 'captured';
    return { cpuNotes: notes, info };
  }

  /** `quit` the crashed QEMU and wait for it to exit (frees the disk lock; the RAM file stays). */
  private async quitCrashed(s: VmState, c: QmpClient | null): Promise<void> {
    const pid = s.pid;
    if (c && !c.closed) {
      await c.execute('quit', undefined, { timeoutMs: this.o.timeouts.qmpMs }).catch(() => undefined);
      await Promise.race([c.whenClosed(), new Promise((r) => setTimeout(r, this.o.timeouts.quitMs))]);
    }
    if (pid && !(await waitExit(pid, this.o.timeouts.quitMs))) {
      if (await cmdlineMentions(pid, s.cfg.qmp)) {
        s.log.warn({ pid }, 'qemu: QEMU did not exit after quit; killing it');
        process.kill(pid, 'SIGKILL');
        await waitExit(pid, 10_000);
      }
    }
  }

  async openMemory(vm: VmRef): Promise<MemorySource> {
    const s = this.state(vm);
    let size: number;
    try {
      size = (await fsp.stat(s.cfg.ramFile)).size;
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_BACKEND', `qemu: the RAM file ${s.cfg.ramFile} of ${vm.name} cannot be read`);
    }
    if (size !== s.ref.memoryBytes) {
      throw new VcvError('VCV_ERR_BACKEND', `qemu: the RAM file ${s.cfg.ramFile} holds ${size} bytes, but memoryMiB says ${s.ref.memoryBytes}`, { vm: vm.name, size });
    }
    return openRawImage(s.cfg.ramFile, { layout: s.cfg.layout });
  }

  async release(vm: VmRef, range: PhysRange): Promise<{ readonly freedBytes: number }> {
    const s = this.state(vm);
    if (s.phase === 'watching') {
      throw new VcvError('VCV_ERR_BACKEND', `qemu: refusing to punch holes into the RAM of ${vm.name}, which is not crashed`, { vm: vm.name });
    }
    const ranges = fileRangesOf(range, s.ref.memoryBytes, s.cfg.layout);
    const freedBytes = await punchHoles(s.cfg.ramFile, ranges, { timeoutMs: this.o.timeouts.commandMs });
    return { freedBytes };
  }

  releasesImmediately(): boolean {
    return true;
  }

  async allocatedBytes(vm: VmRef): Promise<number> {
    return allocatedBytes(this.state(vm).cfg.ramFile);
  }

  async destroy(vm: VmRef): Promise<void> {
    const s = this.state(vm);
    if (s.pid && alive(s.pid) && (await cmdlineMentions(s.pid, s.cfg.qmp))) {
      s.log.warn({ pid: s.pid }, 'qemu: the crashed QEMU still runs; killing it');
      process.kill(s.pid, 'SIGKILL');
      await waitExit(s.pid, 10_000);
    }
    await fsp.rm(s.cfg.ramFile, { force: true });
    s.pid = null;
    // Ready for the VM to run again under the same QMP socket (a new QEMU is a new VM).
    s.phase = 'watching';
    s.log.info({ ramFile: s.cfg.ramFile }, 'qemu: crashed VM destroyed (RAM file removed)');
  }

  async definitionOf(vm: VmRef): Promise<VmDefinition> {
    const s = this.state(vm);
    const def = s.def ?? (await this.loadPersistedDefinition(s));
    if (!def) {
      throw new VcvError('VCV_ERR_BACKEND', `qemu: no definition of ${vm.name}: the process was never seen (give pidfile or argv in its options)`, { vm: vm.name });
    }
    s.def = def;
    return def as unknown as VmDefinition;
  }

  async reattach(vm: VmRef): Promise<boolean> {
    const s = this.state(vm);
    const size = await fsp.stat(s.cfg.ramFile).then((st) => st.size).catch(() => -1);
    if (size !== s.ref.memoryBytes) return false;
    s.phase = 'captured';
    s.def ??= await this.loadPersistedDefinition(s);
    const q = await findQemuByArg(s.cfg.qmp);
    if (q) {
      // The crashed QEMU survived the daemon (killed before capture finished): quit it now.
      s.pid = q.pid;
      await this.quitCrashed(s, s.watcher?.client ?? null);
    }
    return true;
  }

  // ── Backend: recovery VMs ────────────────────────────────────────────────────

  private recoveryFile(id: string): string {
    return path.join(this.o.stateDir, `${id}.recovery.json`);
  }

  private async recoveryClient(r: RecoveryState): Promise<QmpClient> {
    const c = this.recoveryQmp.get(r.id);
    if (c && !c.closed) return c;
    const n = await QmpClient.connect(r.qmpPath, { timeoutMs: this.o.timeouts.qmpMs });
    this.recoveryQmp.set(r.id, n);
    return n;
  }

  private rec(h: VmHandle): RecoveryState {
    const r = this.recoveries.get(h.id);
    if (!r) throw new VcvError('VCV_ERR_RECOVERY', `qemu: unknown recovery VM "${h.name}"`, { vm: h.name });
    return r;
  }

  /** A recovery VM a previous daemon started for the same name and that still runs. */
  private async adopt(id: string): Promise<RecoveryState | null> {
    let r: RecoveryState;
    try {
      r = JSON.parse(await fsp.readFile(this.recoveryFile(id), 'utf8')) as RecoveryState;
    } catch {
      return null;
    }
    if (!alive(r.pid) || !(await cmdlineMentions(r.pid, r.qmpPath))) return null;
    const c = await QmpClient.connect(r.qmpPath, { timeoutMs: this.o.timeouts.qmpMs }).catch(() => null);
    if (!c) return null;
    this.recoveryQmp.set(r.id, c);
    this.recoveries.set(r.id, r);
    return r;
  }

  async startVm(defIn: VmDefinition, opts: StartVmOptions): Promise<VmHandle> {
    if (!isDefinition(defIn)) throw new VcvError('VCV_ERR_RECOVERY', 'qemu: startVm needs a definition from this backend (definitionOf)', {});
    const def = defIn as QemuDefinition;
    await this.ensureStateDir();
    const id = safeName(opts.name);
    const log = this.log.child({ vm: opts.name });
    const adopted = await this.adopt(id);
    if (adopted) {
      log.warn({ pid: adopted.pid }, 'qemu: a recovery VM a previous daemon started is still running: adopting it');
      if (adopted.files.vmem) await this.resizeVm({ id, name: opts.name }, opts.memoryBytes).catch(() => undefined);
      return { id, name: opts.name };
    }
    const cfg = this.vms.get(def.vm)?.cfg;
    const block = this.growGranularityBytes;
    const full = alignDown(opts.maxMemoryBytes, block);
    const want = Math.min(full, alignDown(opts.memoryBytes, block));
    if (want <= 0) throw new VcvError('VCV_ERR_RECOVERY', `qemu: cannot start ${opts.name} with ${opts.memoryBytes} bytes of memory`, { vm: opts.name });
    const growable = want < full;
    const bootBytes = growable ? Math.min(want, alignDown((cfg?.recovery.bootMiB ?? 256) * MiB, block)) : full;
    const plugged = growable ? alignDown(want - bootBytes, block) : 0;
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    const ramDir = cfg?.recovery.ramDir ?? path.dirname(def.ramFile);
    const files = {
      boot: path.join(ramDir, `vicover-${id}-${stamp}.ram`),
      vmem: growable ? path.join(ramDir, `vicover-${id}-${stamp}.vmem`) : null,
    };
    const qmpPath = path.join(this.o.stateDir, `${id}.qmp`);
    const pidfile = path.join(this.o.stateDir, `${id}.pid`);
    const qemuLog = path.join(this.o.stateDir, `${id}.qemu.log`);
    const args = parseArgv(def.argv);
    const consoleLog = consoleFileOf(args) ? path.join(this.o.stateDir, `${id}.console.log`) : null;
    const drives = drivesOf(args);
    const drive = (def.disk ? drives.find((d) => path.resolve(d.file) === path.resolve(def.disk!)) : drives.length === 1 ? drives[0] : undefined) ?? null;
    if (def.disk && !drive) log.warn({ disk: def.disk }, 'qemu: the configured disk is not on the command line; the recovery VM cannot be throttled');
    const argv = recoveryArgv({
      args,
      crashedQmp: def.qmp,
      qmpPath,
      pidfile,
      consoleLog,
      bootFile: files.boot,
      bootBytes,
      fullBytes: full,
      vmem: files.vmem ? { file: files.vmem, pluggedBytes: plugged, blockBytes: block, regionBytes: Math.ceil((full - bootBytes) / GUEST_MEMORY_BLOCK) * GUEST_MEMORY_BLOCK } : null,
      append: cfg?.recovery.append,
      extraArgs: cfg?.recovery.extraArgs,
    });
    for (const f of [qmpPath, pidfile, ...(consoleLog ? [consoleLog] : [])]) await fsp.rm(f, { force: true });
    // Guest memory is private: create the RAM files 0600 ourselves (QEMU uses an existing file and
    // would otherwise create it with its umask), refusing to reuse one.
    for (const f of [files.boot, files.vmem]) {
      if (!f) continue;
      const fh = await fsp.open(f, 'wx', 0o600).catch((e) => {
        throw wrapError(e, 'VCV_ERR_RECOVERY', `qemu: cannot create the recovery RAM file ${f}`, { file: f });
      });
      await fh.close();
    }
    const [cmd, cmdArgs]: [string, string[]] = this.o.recoveryDiesWithDaemon ? ['setpriv', ['--pdeathsig', 'KILL', '--', def.binary, ...argv]] : [def.binary, argv];
    closeSync(openSync(qemuLog, 'w', 0o600)); // a fresh, private log file
    // A long-running VM: execa without a timeout, not killed when the daemon exits (the recovery VM
    // is the service), output appended to its log file.
    const child = execa(cmd, cmdArgs, {
      detached: !this.o.recoveryDiesWithDaemon,
      cleanup: false,
      stdin: 'ignore',
      stdout: { file: qemuLog, append: true },
      stderr: { file: qemuLog, append: true },
      reject: false,
    });
    let exited: { code: number | null; signal: string | null } | null = null;
    let spawnError: Error | null = null;
    child.once('exit', (code, signal) => (exited = { code, signal }));
    child.once('error', (e) => (spawnError = e));
    void child.catch(() => undefined);
    child.unref();
    log.info({ bootMiB: bootBytes / MiB, pluggedMiB: plugged / MiB, fullMiB: full / MiB, growable, qmp: qmpPath }, `qemu: starting recovery VM ${opts.name}`);
    // Wait for its QMP socket (or its death: e.g. the disk is still locked).
    const deadline = Date.now() + this.o.timeouts.startMs;
    let client: QmpClient | null = null;
    while (!client) {
      if (spawnError) throw new VcvError('VCV_ERR_COMMAND_NOT_FOUND', `qemu: cannot run ${def.binary}: ${(spawnError as Error).message}`, { command: def.binary });
      if (exited) {
        const out = await fsp.readFile(qemuLog, 'utf8').catch(() => '');
        await this.removeFiles([files.boot, files.vmem]);
        throw new VcvError('VCV_ERR_RECOVERY', `qemu: the recovery VM ${opts.name} exited at start (${JSON.stringify(exited)}): ${tail(out)}`, { vm: opts.name, log: qemuLog });
      }
      if (Date.now() > deadline) {
        if (child.pid) process.kill(child.pid, 'SIGKILL');
        await this.removeFiles([files.boot, files.vmem]);
        throw new VcvError('VCV_ERR_TIMEOUT', `qemu: the recovery VM ${opts.name} did not answer QMP within ${this.o.timeouts.startMs} ms`, { vm: opts.name });
      }
      client = await QmpClient.connect(qmpPath, { timeoutMs: 2000 }).catch(() => null);
      if (!client) await new Promise((r) => setTimeout(r, 100));
    }
    this.recoveryQmp.set(id, client);
    const pid = (await readPidfile(pidfile)) ?? child.pid ?? 0;
    const r: RecoveryState = {
      id,
      name: opts.name,
      vm: def.vm,
      pid,
      qmpPath,
      pidfile,
      files,
      bootBytes,
      vmemBytes: growable ? full - bootBytes : 0,
      blockBytes: block,
      pluggedBytes: plugged,
      drive: drive?.ref ?? null,
      endpoints: argvEndpoints(args),
      consoleLog,
      qemuLog,
      baseline: {
        bps: cfg?.recovery.ioLimitMiBps ? Math.round(cfg.recovery.ioLimitMiBps * MiB) : undefined,
        iops: cfg?.recovery.ioLimitIops,
      },
      startedAt: new Date().toISOString(),
    };
    this.recoveries.set(id, r);
    await this.writeJson(this.recoveryFile(id), r).catch((e) => log.warn({ err: e }, 'qemu: cannot persist the recovery VM state'));
    if (r.baseline.bps || r.baseline.iops) await this.throttleVm({ id, name: opts.name }, null);
    return { id, name: opts.name };
  }

  private async removeFiles(files: readonly (string | null)[]): Promise<void> {
    for (const f of files) if (f) await fsp.rm(f, { force: true });
  }

  /** Memory the recovery VM can use now (boot + plugged), bytes. */
  memoryOf(h: VmHandle): number {
    const r = this.rec(h);
    return r.bootBytes + r.pluggedBytes;
  }

  async resizeVm(h: VmHandle, memoryBytes: number): Promise<void> {
    const r = this.rec(h);
    if (!r.files.vmem) {
      if (memoryBytes > r.bootBytes) throw new VcvError('VCV_ERR_RECOVERY', `qemu: ${h.name} was started with all its memory and cannot grow`, { vm: h.name });
      return;
    }
    const plugged = Math.max(0, Math.min(r.vmemBytes, alignDown(memoryBytes - r.bootBytes, r.blockBytes)));
    if (plugged === r.pluggedBytes) return;
    const c = await this.recoveryClient(r);
    await c.execute('qom-set', { path: `/machine/peripheral/${VMEM_DEVICE_ID}`, property: 'requested-size', value: plugged }, { timeoutMs: this.o.timeouts.qmpMs });
    r.pluggedBytes = plugged;
    await this.writeJson(this.recoveryFile(r.id), r).catch(() => undefined);
  }

  /** What the guest has actually plugged (virtio-mem `size`), bytes; null when not growable. */
  async pluggedBytes(h: VmHandle): Promise<number | null> {
    const r = this.rec(h);
    if (!r.files.vmem) return null;
    const c = await this.recoveryClient(r);
    return c.execute<number>('qom-get', { path: `/machine/peripheral/${VMEM_DEVICE_ID}`, property: 'size' }, { timeoutMs: this.o.timeouts.qmpMs });
  }

  async throttleVm(h: VmHandle, limits: IoLimits | null): Promise<void> {
    const r = this.rec(h);
    if (!r.drive) return;
    // 0 means "no limit" to QEMU; a policy's pause (0 B/s) becomes the smallest useful limit instead.
    const capped = (want: number | undefined, base: number | undefined, floor: number) => {
      const v = want !== undefined && Number.isFinite(want) ? Math.max(floor, Math.round(want)) : 0;
      if (!base) return v;
      return v === 0 ? base : Math.min(v, base);
    };
    const bps = capped(limits?.bps, r.baseline.bps, 4096);
    const iops = capped(limits?.iops, r.baseline.iops, 1);
    const c = await this.recoveryClient(r);
    await c.execute('block_set_io_throttle', { ...r.drive, bps, bps_rd: 0, bps_wr: 0, iops, iops_rd: 0, iops_wr: 0 }, { timeoutMs: this.o.timeouts.qmpMs });
  }

  async vmIoStats(h: VmHandle): Promise<IoStats> {
    const r = this.rec(h);
    const c = await this.recoveryClient(r);
    const all = await c.execute<{ device: string; qdev?: string; stats: Record<string, number> }[]>('query-blockstats', undefined, { timeoutMs: this.o.timeouts.qmpMs });
    let sum = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
    for (const b of all) {
      const ref = r.drive as { device?: string; id?: string } | null;
      const match = !ref ? true : ref.device ? b.device === ref.device : !!ref.id && (b.qdev ?? '').includes(`/${ref.id}/`);
      if (!match) continue;
      sum = {
        readBytes: sum.readBytes + (b.stats.rd_bytes ?? 0),
        writeBytes: sum.writeBytes + (b.stats.wr_bytes ?? 0),
        readOps: sum.readOps + (b.stats.rd_operations ?? 0),
        writeOps: sum.writeOps + (b.stats.wr_operations ?? 0),
      };
    }
    return sum;
  }

  async vmAllocatedBytes(h: VmHandle): Promise<number> {
    const r = this.rec(h);
    return (await allocatedBytes(r.files.boot)) + (r.files.vmem ? await allocatedBytes(r.files.vmem) : 0);
  }

  /** The RAM files of a recovery VM (tests sample them independently). */
  ramFilesOf(h: VmHandle): string[] {
    const r = this.rec(h);
    return [r.files.boot, ...(r.files.vmem ? [r.files.vmem] : [])];
  }

  /** The pid of a recovery VM's QEMU. */
  pidOf(h: VmHandle): number {
    return this.rec(h).pid;
  }

  async stopVm(h: VmHandle): Promise<void> {
    const r = this.rec(h);
    const c = await this.recoveryClient(r).catch(() => null);
    if (c) {
      await c.execute('quit', undefined, { timeoutMs: this.o.timeouts.qmpMs }).catch(() => undefined);
      c.close();
    }
    this.recoveryQmp.delete(r.id);
    if (r.pid && !(await waitExit(r.pid, this.o.timeouts.quitMs)) && (await cmdlineMentions(r.pid, r.qmpPath))) {
      process.kill(r.pid, 'SIGKILL');
      await waitExit(r.pid, 10_000);
    }
    await this.removeFiles([r.files.boot, r.files.vmem, r.qmpPath, r.pidfile, this.recoveryFile(r.id)]);
    this.recoveries.delete(r.id);
  }

  watchConsole(h: VmHandle, onLine: (line: string) => void): () => void {
    const r = this.rec(h);
    if (!r.consoleLog) return () => undefined;
    return followFile(r.consoleLog, onLine, { fromStart: true });
  }

  endpointsOf(h: VmHandle): Readonly<Record<string, string>> {
    return this.rec(h).endpoints;
  }
}

