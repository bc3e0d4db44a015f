/**
 * The simulated host: a Backend whose VMs are generated Linux guest images (guest/), whose disk is a
 * model (disk.ts) and whose recovery VMs boot as a modelled demand (vm.ts). SIMULATED everywhere: the
 * backend says so (`simulated: true` in every report), every log line it writes carries
 * `simulated: true`, every description it hands out starts with "SIMULATED".
 *
 *   crash (on command: crash(); on a schedule: crashAfterSeconds; or "crash VM" on commandSocket)
 *   → capture: one NT_PRSTATUS note per vCPU → openMemory: the image (+ generated content)
 *   → release(range): the range reads as zero, the crashed VM holds that much less (modelled)
 *   → dumpTarget: the dump goes through the modelled disk (file or counting sink)
 *   → startVm/resizeVm/throttleVm/vmIoStats: the recovery VM model on the same disk
 *
 * Host memory is modelled, not measured: the crashed VM holds its size minus what it released (a
 * long-running guest has touched all of its RAM), a recovery VM what its boot has touched.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Backend, BackendContext, CaptureResult, IoLimits, IoStats, Logger, MemorySource, PhysRange, StartVmOptions, VmDefinition, VmHandle, VmRef } from '@vicover/core';
import { VcvError, wrapError } from '@vicover/errors';
import { nodeFs, prstatusNote, type DumpFs } from '@vicover/dumpfmt';
import { ensureImage, type GuestImage } from './guest/image.js';
import { releaseRange, SimGuestMemory } from './guest/memory.js';
import { normalizeSpec, type GuestSpec } from './guest/spec.js';
import { PB_BYTES } from './guest/plan.js';
import { ModelledDisk } from './disk.js';
import { CountingSink, DUMP_STREAM, modelledFs } from './dumpfs.js';
import { SimRecoveryVm, type SimVmStatus } from './vm.js';
import { DEFAULT_DISK_MIBPS } from './calibration.js';
import { defaultCacheDir, type SimhostOptions, type SimVmOptions } from './options.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

type Phase = 'starting' | 'running' | 'crashed' | 'captured' | 'destroyed';

interface VmState {
  readonly cfg: SimVmOptions;
  readonly spec: GuestSpec;
  readonly ref: VmRef;
  readonly log: Logger;
  image: GuestImage | null;
  phase: Phase;
  released: Uint8Array | null;
  releasedBytes: number;
  bootCount: number;
  crashTimer: ReturnType<typeof setTimeout> | null;
  crashedAt: number | null;
}

/** What the simulated host looks like right now (the demo's live view). */
export interface SimhostStatus {
  readonly simulated: true;
  readonly diskBandwidthBps: number;
  /** Current rates on the modelled disk: the dump writer and each recovery VM (bytes/s). */
  readonly diskRates: Record<string, number>;
  readonly vms: { name: string; phase: Phase; memoryBytes: number; releasedBytes: number }[];
  readonly recovery: SimVmStatus[];
  readonly dumpSink: { kind: 'file' | 'count'; bytes: number } | null;
}

export interface SimhostBackendOptions extends SimhostOptions {
  /** The core's io.bandwidthMiBps (the I/O policy's idea of the device). */
  readonly coreBandwidthMiBps?: number;
}

export class SimhostBackend implements Backend {
  readonly name = 'simhost';
  readonly simulated = true;
  readonly growGranularityBytes: number;
  readonly disk: ModelledDisk;
  private readonly vms = new Map<string, VmState>();
  private readonly recoveries = new Map<string, SimRecoveryVm>();
  private ctx: BackendContext | null = null;
  private lastSink: { kind: 'file' | 'count'; sink?: CountingSink } | null = null;
  private server: net.Server | null = null;
  private seq = 0;

  constructor(
    readonly o: SimhostBackendOptions,
    private readonly log: Logger,
  ) {
    this.growGranularityBytes = o.growGranularityMiB * MiB;
    const bw = o.disk.bandwidthMiBps ?? o.coreBandwidthMiBps ?? DEFAULT_DISK_MIBPS;
    this.disk = new ModelledDisk(bw * MiB);
    if (o.disk.bandwidthMiBps && o.coreBandwidthMiBps && o.disk.bandwidthMiBps !== o.coreBandwidthMiBps) {
      log.warn({ disk: o.disk.bandwidthMiBps, io: o.coreBandwidthMiBps }, '[SIMULATED] simhost: disk.bandwidthMiBps differs from io.bandwidthMiBps: the I/O policy plans for another disk than the modelled one');
    }
    for (const cfg of o.vms) {
      if (this.vms.has(cfg.name)) throw new VcvError('VCV_ERR_CONFIG_INVALID', `simhost: two VMs are named "${cfg.name}"`, { plugin: 'simhost' });
      const spec = normalizeSpec({ ...cfg, content: cfg.content ?? 'auto' });
      this.vms.set(cfg.name, {
        cfg,
        spec,
        ref: Object.freeze({ id: cfg.name, name: cfg.name, memoryBytes: spec.ramBytes }),
        log: log.child({ vm: cfg.name }),
        image: null,
        phase: 'starting',
        released: null,
        releasedBytes: 0,
        bootCount: 0,
        crashTimer: null,
        crashedAt: null,
      });
    }
  }

  private state(vm: VmRef | string): VmState {
    const key = typeof vm === 'string' ? vm : vm.id;
    const s = this.vms.get(key) ?? (typeof vm === 'string' ? undefined : this.vms.get(vm.name));
    if (!s) throw new VcvError('VCV_ERR_BACKEND', `simhost: unknown VM "${typeof vm === 'string' ? vm : vm.name}"`, { vm: typeof vm === 'string' ? vm : vm.name });
    return s;
  }

  private rec(h: VmHandle): SimRecoveryVm {
    const r = this.recoveries.get(h.id);
    if (!r) throw new VcvError('VCV_ERR_RECOVERY', `simhost: unknown recovery VM "${h.name}"`, { vm: h.name });
    return r;
  }

  /** Generate (or find cached) images for every VM; called by start(), callable earlier (the demo). */
  async prepare(): Promise<void> {
    for (const s of this.vms.values()) {
      if (s.image) continue;
      const t0 = performance.now();
      s.image = await ensureImage(s.spec, this.o.cacheDir ?? defaultCacheDir(), (m) => s.log.info(`[SIMULATED] simhost: ${m}`)).catch((e) => {
        throw wrapError(e, 'VCV_ERR_BACKEND', `simhost: cannot build the simulated guest image of ${s.cfg.name}`);
      });
      s.released = new Uint8Array(s.spec.ramBytes / PB_BYTES);
      s.phase = 'running';
      s.bootCount = 1;
      s.log.info(
        { memoryGiB: s.spec.ramBytes / GiB, image: s.image.dir, content: s.spec.content, intended: s.image.meta.intended, ms: Math.round(performance.now() - t0) },
        `[SIMULATED] simhost: VM ${s.cfg.name} running (${s.spec.ramBytes / GiB} GiB, ${s.image.meta.intended.free} free pages)`,
      );
    }
  }

  // ── watching ─────────────────────────────────────────────────────────────

  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
    await this.prepare();
    for (const s of this.vms.values()) {
      if (s.cfg.crashAfterSeconds !== undefined && !s.crashTimer) {
        s.crashTimer = setTimeout(() => {
          s.crashTimer = null;
          this.crash(s.cfg.name, 'scheduled');
        }, s.cfg.crashAfterSeconds * 1000);
      }
    }
    if (this.o.commandSocket) await this.listenCommands(this.o.commandSocket);
  }

  async stop(): Promise<void> {
    for (const s of this.vms.values()) {
      if (s.crashTimer) clearTimeout(s.crashTimer);
      s.crashTimer = null;
    }
    this.ctx = null;
    const srv = this.server;
    this.server = null;
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
    // Recovery VMs keep running (the contract); the HTTP endpoints close with the process.
  }

  async list(): Promise<readonly VmRef[]> {
    return [...this.vms.values()].map((s) => s.ref);
  }

  /** Crash a running simulated VM now (the guest panics; the panic message is in its kernel log). */
  crash(name: string, how = 'on command'): VmRef {
    const s = this.state(name);
    if (s.phase === 'destroyed' && s.image) {
      // The VM runs again (its recovery took over): a new incarnation on the same image.
      s.released = new Uint8Array(s.spec.ramBytes / PB_BYTES);
      s.releasedBytes = 0;
      s.phase = 'running';
    }
    if (s.phase !== 'running') throw new VcvError('VCV_ERR_BACKEND', `simhost: ${name} is ${s.phase}, not running: it cannot crash now`, { vm: name });
    if (!this.ctx) throw new VcvError('VCV_ERR_BACKEND', 'simhost: the backend is not started', { vm: name });
    s.phase = 'crashed';
    s.crashedAt = Date.now();
    const reason = `SIMULATED kernel panic (${how}): ${s.image!.meta.panicLine}`;
    s.log.warn({ reason }, `[SIMULATED] simhost: ${name} crashed`);
    this.ctx.onCrash({ vm: s.ref, at: s.crashedAt, reason });
    return s.ref;
  }

  private async listenCommands(file: string): Promise<void> {
    await fs.promises.rm(file, { force: true });
    await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    this.server = net.createServer((c) => {
      c.setEncoding('utf8');
      let buf = '';
      c.on('data', (d: string) => {
        buf += d;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          const [cmd, arg] = line.split(/\s+/);
          try {
            if (cmd === 'crash') {
              const vm = this.crash(arg ?? [...this.vms.keys()][0]!, 'on command');
              c.write(`OK crash ${vm.name}\n`);
            } else if (cmd === 'status') c.write(`OK ${JSON.stringify(this.status())}\n`);
            else c.write(`ERR unknown command ${JSON.stringify(cmd)} (crash VM, status)\n`);
          } catch (e) {
            c.write(`ERR ${(e as Error).message}\n`);
          }
        }
      });
      c.on('error', () => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (e) => reject(wrapError(e, 'VCV_ERR_BACKEND', `simhost: cannot listen on ${file}`)));
      this.server!.listen(file, () => resolve());
    });
    this.server.unref();
    fs.chmodSync(file, 0o600);
    this.log.info({ socket: file }, `[SIMULATED] simhost: commands on ${file} ("crash VM", "status")`);
  }

  // ── the crashed VM ───────────────────────────────────────────────────────

  async capture(vm: VmRef): Promise<CaptureResult> {
    const s = this.state(vm);
    if (s.phase !== 'crashed') throw new VcvError('VCV_ERR_BACKEND', `simhost: ${vm.name} has not crashed`, { vm: vm.name });
    const meta = s.image!.meta;
    const rip = BigInt(`0x${meta.rip}`);
    const notes = Array.from({ length: s.spec.cpus }, (_, cpu) =>
      prstatusNote(cpu, { rip: rip + BigInt(cpu * 0x40), rsp: 0xffffc90000003e00n + BigInt(cpu) * 0x4000n, rbp: 0xffffc90000003e40n + BigInt(cpu) * 0x4000n, cs: 0x10n, ss: 0x18n, eflags: 0x246n }),
    );
    s.phase = 'captured';
    return { cpuNotes: notes, info: { simulated: true, source: 'simhost (modelled vCPU registers)', cpus: s.spec.cpus, cr3: `0x${meta.cr3.toString(16)}`, image: s.image!.dir } };
  }

  async openMemory(vm: VmRef): Promise<MemorySource> {
    const s = this.state(vm);
    if (!s.image || !s.released) throw new VcvError('VCV_ERR_BACKEND', `simhost: ${vm.name} has no memory`, { vm: vm.name });
    return new SimGuestMemory(s.image, { released: s.released, vmcoreinfoNote: this.o.vmcoreinfoNote });
  }

  async release(vm: VmRef, range: PhysRange): Promise<{ readonly freedBytes: number }> {
    const s = this.state(vm);
    if (s.phase === 'running' || s.phase === 'starting') throw new VcvError('VCV_ERR_BACKEND', `simhost: refusing to release memory of ${vm.name}, which has not crashed`, { vm: vm.name });
    if (!s.released) return { freedBytes: 0 };
    const freedBytes = releaseRange(s.released, range);
    s.releasedBytes += freedBytes;
    return { freedBytes };
  }

  releasesImmediately(): boolean {
    return true;
  }

  async allocatedBytes(vm: VmRef): Promise<number> {
    const s = this.state(vm);
    if (s.phase === 'destroyed' || !s.released) return 0;
    return s.spec.ramBytes - s.releasedBytes;
  }

  async destroy(vm: VmRef): Promise<void> {
    const s = this.state(vm);
    s.phase = 'destroyed';
    s.bootCount++;
    s.log.info(`[SIMULATED] simhost: crashed VM ${vm.name} destroyed (all its memory is back)`);
    // The image stays (read-only, cached): a later crash() runs the VM again from it.
  }

  async definitionOf(vm: VmRef): Promise<VmDefinition> {
    const s = this.state(vm);
    return Object.freeze({ backend: 'simhost', vm: s.cfg.name, memoryBytes: s.spec.ramBytes, boot: { ...this.o.recovery }, simulated: true });
  }

  async dumpTarget(vm: VmRef, info: { readonly path: string; readonly estimatedBytes: number }): Promise<{ fs: DumpFs; description: string }> {
    const s = this.state(vm);
    const est = info.estimatedBytes;
    let kind: 'file' | 'count' = this.o.dump.sink === 'count' ? 'count' : 'file';
    let why = '';
    if (this.o.dump.sink === 'auto') {
      const free = await fs.promises
        .statfs(path.dirname(info.path))
        .then((st) => st.bavail * st.bsize)
        .catch(() => Infinity);
      if (est > this.o.dump.maxFileGiB * GiB) {
        kind = 'count';
        why = `up to ${gib(est)} GiB is more than dump.maxFileGiB (${this.o.dump.maxFileGiB} GiB)`;
      } else if (est > free / 2) {
        kind = 'count';
        why = `up to ${gib(est)} GiB would not fit in half of the ${gib(free)} GiB free on this disk`;
      }
    }
    const bw = `${Math.round(this.disk.bandwidthBps / MiB)} MiB/s`;
    if (kind === 'count') {
      const sink = new CountingSink();
      this.lastSink = { kind, sink };
      const description = `SIMULATED: counting sink paced at the modelled disk (${bw}); the dump is NOT stored${why ? ` (${why})` : ''}`;
      s.log.warn({ estimatedBytes: est }, `[SIMULATED] simhost: ${description}`);
      return { fs: modelledFs(this.disk, sink, DUMP_STREAM), description };
    }
    this.lastSink = { kind };
    return { fs: modelledFs(this.disk, nodeFs, DUMP_STREAM), description: `SIMULATED: modelled disk (${bw}); the dump file is stored at ${info.path}` };
  }

  // ── recovery VMs ─────────────────────────────────────────────────────────

  async startVm(def: VmDefinition, opts: StartVmOptions): Promise<VmHandle> {
    if (def.backend !== 'simhost') throw new VcvError('VCV_ERR_RECOVERY', 'simhost: startVm needs a definition from this backend (definitionOf)');
    const s = this.state(String(def.vm));
    const id = `${opts.name.replace(/[^A-Za-z0-9._-]+/g, '_')}-${++this.seq}`;
    const vm = new SimRecoveryVm(id, opts.name, opts.memoryBytes, opts.maxMemoryBytes, this.disk, this.o.recovery, { vm: s.cfg.name, bootCount: s.bootCount + 1 });
    if (this.o.recovery.http) await vm.listen();
    this.recoveries.set(id, vm);
    this.log.info({ vm: opts.name, memoryMiB: Math.round(vm.memoryBytes / MiB), endpoints: vm.endpoints }, `[SIMULATED] simhost: recovery VM ${opts.name} booting`);
    void vm.run().catch((e) => this.log.error({ err: e }, '[SIMULATED] simhost: recovery VM model failed'));
    return { id, name: opts.name };
  }

  async resizeVm(h: VmHandle, memoryBytes: number): Promise<void> {
    this.rec(h).resize(memoryBytes);
  }

  async throttleVm(h: VmHandle, limits: IoLimits | null): Promise<void> {
    const r = this.rec(h);
    this.disk.setCap(r.stream, limits?.bps !== undefined && Number.isFinite(limits.bps) ? Math.max(4096, limits.bps) : Infinity);
  }

  async vmIoStats(h: VmHandle): Promise<IoStats> {
    return this.rec(h).ioStats();
  }

  async vmAllocatedBytes(h: VmHandle): Promise<number> {
    return this.rec(h).touchedBytes;
  }

  async stopVm(h: VmHandle): Promise<void> {
    const r = this.rec(h);
    await r.stop();
    this.recoveries.delete(h.id);
  }

  watchConsole(h: VmHandle, onLine: (line: string) => void): () => void {
    return this.rec(h).watch(onLine);
  }

  endpointsOf(h: VmHandle): Readonly<Record<string, string>> {
    return this.rec(h).endpoints;
  }

  /** Stop every recovery VM (the demo and tests end with this; a site's would keep running). */
  async stopAll(): Promise<void> {
    for (const [id, r] of [...this.recoveries]) {
      await r.stop();
      this.recoveries.delete(id);
    }
  }

  status(): SimhostStatus {
    return {
      simulated: true,
      diskBandwidthBps: this.disk.bandwidthBps,
      diskRates: this.disk.rates(),
      vms: [...this.vms.values()].map((s) => ({ name: s.cfg.name, phase: s.phase, memoryBytes: s.spec.ramBytes, releasedBytes: s.releasedBytes })),
      recovery: [...this.recoveries.values()].map((r) => r.status()),
      dumpSink: this.lastSink ? { kind: this.lastSink.kind, bytes: this.lastSink.sink?.bytes ?? this.disk.stats(DUMP_STREAM).writeBytes } : null,
    };
  }

  /** The image a VM runs on (tests, the demo's summary). */
  imageOf(name: string): GuestImage | null {
    return this.state(name).image;
  }
}

function gib(b: number): string {
  return (b / GiB).toFixed(b < 10 * GiB ? 2 : 0);
}
