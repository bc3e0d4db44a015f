/**
 * The Xen backend (DESIGN.md §2, docs/xen.md): runs in dom0 next to the toolstack.
 *
 * Crashed domain, in order: state `c` in `xl list` (polled, and checked at once whenever the xenstore
 * watch @releaseDomain fires; the domain needs on_crash="preserve") → capture: the native helper opens
 * the domain (PV: p2m rebuilt from shared_info; PVH/HVM: populated gfns) and reads the vCPU registers →
 * NT_PRSTATUS notes; the domain's disks are force-detached (its backend lets go of the image) →
 * openMemory: batched foreign mappings through the helper → release: XENMEM_decrease_reservation per
 * dumped chunk, with the domain's page count and Xen's free memory measured before and after (PVH/HVM:
 * freed at once; PV: returns success but frees nothing until destroy — releasesImmediately is false) →
 * destroy: `xl destroy`.
 *
 * Recovery domain: the crashed domain's configuration (`xl list -l`, or its own xl.cfg) as a new xl.cfg
 * with another name, `memory` as the strategy asks and `maxmem` = the crashed domain's; grown with
 * `xl mem-set`; its qdisk backend (a dom0 QEMU) limited through cgroup v2 io.max; its console followed
 * in xenconsoled's log.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VcvError, isVcvError, wrapError } from '@vicover/errors';
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
import { PAGE_SIZE } from '@vicover/core';
import { HelperClient, SyncHelper, locateHelper } from './helper.js';
import { XenMemorySource, type DomainLayout } from './memory.js';
import { parseVcpus, vcpuNotes, type HelperVcpu } from './registers.js';
import { Xl, isCrashed, watchXenstore, type XlDomain } from './xl.js';
import { q, toXlConfig } from './config.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { editKernelCmdline } from '@vicover/hostutil';
import { CgroupIo, blkbackStats, blockDeviceOf, qdiskPid, vdevId } from './io.js';
import { followFile } from '@vicover/hostutil';
import type { DomainOptions, XenOptions } from './options.js';

const MiB = 1024 * 1024;

/** How to start a domain again (what definitionOf returns; strategies pass it back to startVm). */
export interface XenDefinition {
  readonly backend: 'xen';
  readonly vm: string;
  readonly domid: number;
  readonly type: string;
  /** libxl's configuration of the crashed domain (`xl list -l`). */
  readonly config: Record<string, unknown>;
  readonly configFile?: string;
  readonly maxMemKiB: number;
  readonly targetMemKiB: number;
  readonly disks: readonly { readonly target: string; readonly vdev: string; readonly backend?: string }[];
  /**
   * Pages a domain holds beyond its `memory` (PVH: special pages, ACPI tables), measured on the crashed
   * domain: a recovery domain smaller than the crashed one is sized this much below what the strategy
   * allows, so that both together stay within the host-memory budget.
   */
  readonly overheadPages?: number;
  readonly readAt: string;
}

/** Release bookkeeping, shown in the report (capture info is the report's `extra.capture`). */
export interface ReleaseStats {
  calls: number;
  requestedPages: number;
  releasedFrames: number;
  failedFrames: number;
  /** Sum of (domain pages before − after) over the calls: what the domain really gave up. */
  domainPagesDropped: number;
  /** Sum of (Xen free pages after − before): what Xen really got back. */
  xenFreePagesGained: number;
  seconds: number;
  /** Calls whose frames were released but the domain's page count did not drop (PV). */
  callsWithoutEffect: number;
  mode: 'decrease-reservation' | 'skipped (PV: pvRelease none)';
}

type Phase = 'watching' | 'crashed' | 'captured';

interface DomState {
  readonly cfg: DomainOptions;
  readonly log: Logger;
  phase: Phase;
  domid: number | null;
  ref: VmRef;
  def: XenDefinition | null;
  helper: HelperClient | null;
  sync: SyncHelper | null;
  layout: DomainLayout | null;
  memory: XenMemorySource | null;
  info: Record<string, unknown> | null;
  release: ReleaseStats | null;
}

interface RecoveryState {
  readonly id: string;
  readonly name: string;
  readonly vm: string;
  /** Changes when the toolstack restarts the domain (on_reboot=restart: a reboot or a triple fault in boot). */
  domid: number;
  /** How often the toolstack restarted it under a new domid. */
  restarts: number;
  readonly cfgFile: string;
  readonly consoleLog: string;
  readonly maxMemKiB: number;
  readonly overheadKiB: number;
  memoryKiB: number;
  readonly disks: readonly { readonly target: string; readonly vdev: string; readonly backend?: string }[];
  readonly startedAt: string;
  /** qdisk: the dom0 QEMU's cgroup and the block device its image lives on. */
  cgroup: string | null;
  device: string | null;
  /** The I/O limit last set (applied again to a restarted domain's new backend). */
  limits?: IoLimits | null;
  /** Disk I/O of the domain's earlier incarnations (before toolstack restarts): vmIoStats adds it, so its counters never go back. */
  ioBase?: IoStats;
  /** The current incarnation's counters as last read. */
  ioLast?: IoStats;
  /** The current incarnation's blkback devices have been seen (their disappearing then means a restart). */
  blkbackSeen?: boolean;
}

const NO_IO: IoStats = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };

function addIo(a: IoStats, b: IoStats): IoStats {
  return { readBytes: a.readBytes + b.readBytes, writeBytes: a.writeBytes + b.writeBytes, readOps: a.readOps + b.readOps, writeOps: a.writeOps + b.writeOps };
}

function isDefinition(d: VmDefinition): d is VmDefinition & XenDefinition {
  return d.backend === 'xen' && typeof d.vm === 'string' && typeof d.config === 'object' && d.config !== null;
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) || 'domain';
}

export class XenBackend implements Backend {
  readonly name = 'xen';
  readonly growGranularityBytes: number;
  private readonly xl: Xl;
  /** Recovery domains whose restart is being followed (follow()). */
  private readonly following = new Map<string, Promise<number>>();
  private readonly doms = new Map<string, DomState>();
  private readonly recoveries = new Map<string, RecoveryState>();
  private readonly cgroups: CgroupIo;
  private ctx: BackendContext | null = null;
  private stopWatch: (() => void) | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;
  private recheck = false;
  private helperBin: Promise<string> | null = null;
  private stateDirReady: Promise<void> | null = null;
  private readonly warned = new Set<string>();

  constructor(
    private readonly o: XenOptions,
    private readonly log: Logger,
  ) {
    this.growGranularityBytes = o.growGranularityMiB * MiB;
    this.xl = new Xl({ xl: o.xl, timeoutMs: o.timeouts.commandMs });
    this.cgroups = new CgroupIo(o.cgroupRoot);
    for (const cfg of o.domains) {
      if (this.doms.has(cfg.name)) throw new VcvError('VCV_ERR_CONFIG_INVALID', `xen: two domains are named "${cfg.name}"`, { plugin: 'xen' });
      this.doms.set(cfg.name, {
        cfg,
        log: log.child({ vm: cfg.name }),
        phase: 'watching',
        domid: null,
        ref: Object.freeze({ id: cfg.name, name: cfg.name, memoryBytes: 0 }),
        def: null,
        helper: null,
        sync: null,
        layout: null,
        memory: null,
        info: null,
        release: null,
      });
    }
  }

  // ── helpers ──────────────────────────────────────────────────────────────────

  private state(vm: VmRef): DomState {
    const s = this.doms.get(vm.id) ?? this.doms.get(vm.name);
    if (!s) throw new VcvError('VCV_ERR_BACKEND', `xen: unknown domain "${vm.name}" (not in the plugin's domains list)`, { vm: vm.name });
    return s;
  }

  private warnOnce(key: string, log: Logger, msg: string, extra: Record<string, unknown> = {}): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    log.warn(extra, msg);
  }

  private ensureStateDir(): Promise<void> {
    this.stateDirReady ??= fsp.mkdir(this.o.stateDir, { recursive: true, mode: 0o700 }).then(
      () => undefined,
      (e) => {
        throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `xen: cannot create the state directory ${this.o.stateDir}`);
      },
    );
    return this.stateDirReady;
  }

  private async writeJson(file: string, data: unknown): Promise<void> {
    await this.ensureStateDir();
    const tmp = `${file}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
    await fsp.rename(tmp, file);
  }

  private defFile(vm: string): string {
    return path.join(this.o.stateDir, `${safeName(vm)}.definition.json`);
  }

  private recoveryFile(id: string): string {
    return path.join(this.o.stateDir, `${id}.recovery.json`);
  }

  /** The helper binary (located or built once). */
  helperPath(): Promise<string> {
    this.helperBin ??= (async () => {
      await this.ensureStateDir();
      return locateHelper({ helper: this.o.helper, buildDir: this.o.stateDir, timeoutMs: this.o.timeouts.commandMs });
    })();
    return this.helperBin;
  }

  /** The crashed domain opened in the (asynchronous) helper: its layout. */
  private async openDomain(s: DomState): Promise<DomainLayout> {
    if (s.helper && s.layout) return s.layout;
    if (s.domid === null) throw new VcvError('VCV_ERR_BACKEND', `xen: ${s.cfg.name} has no crashed domain to open`, { vm: s.cfg.name });
    const bin = await this.helperPath();
    const h = HelperClient.start(bin);
    try {
      const r = await h.request<DomainLayout>(`open ${s.domid}`);
      s.helper = h;
      s.layout = r.json;
      return r.json;
    } catch (e) {
      await h.close().catch(() => undefined);
      throw e;
    }
  }

  private syncHelper(s: DomState): SyncHelper {
    if (!s.sync) {
      const bin = s.helper?.bin;
      if (!bin || s.domid === null) throw new VcvError('VCV_ERR_BACKEND', `xen: ${s.cfg.name} is not open`);
      const h = new SyncHelper(bin);
      h.request(`open ${s.domid}`);
      s.sync = h;
    }
    return s.sync;
  }

  private async closeHelpers(s: DomState): Promise<void> {
    s.sync?.close();
    s.sync = null;
    await s.helper?.close().catch(() => undefined);
    s.helper = null;
  }

  // ── watching ─────────────────────────────────────────────────────────────────

  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
    await this.ensureStateDir();
    if (this.o.watch) {
      this.stopWatch = watchXenstore('@releaseDomain', () => this.scheduleCheck(), {
        bin: this.o.xenstoreWatch,
        onError: (m) => this.warnOnce(`watch:${m.slice(0, 40)}`, this.log, `xen: ${m} (crashes are still found by polling xl list)`),
      });
    }
    // A crash that happened while no daemon listened: the domain is still in state c.
    await this.check().catch((e) => this.log.warn({ err: e }, 'xen: the first xl list failed'));
    this.pollTimer = setInterval(() => this.scheduleCheck(), this.o.pollMs);
    this.pollTimer.unref?.();
  }

  async stop(): Promise<void> {
    this.stopWatch?.();
    this.stopWatch = null;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.ctx = null;
    // The helpers of crashed domains a failed session left behind (their pipes keep a process alive).
    for (const s of this.doms.values()) await this.closeHelpers(s);
  }

  private scheduleCheck(): void {
    if (this.checking) {
      this.recheck = true;
      return;
    }
    this.checking = this.check()
      .catch((e) => this.log.debug({ err: e }, 'xen: xl list failed'))
      .finally(() => {
        this.checking = null;
        if (this.recheck && this.ctx) {
          this.recheck = false;
          this.scheduleCheck();
        }
      });
  }

  private async check(): Promise<void> {
    if (!this.ctx) return;
    const all = await this.xl.list();
    for (const s of this.doms.values()) {
      const d = all.find((x) => x.name === s.cfg.name);
      if (d && isCrashed(d) && s.phase === 'watching') await this.reportCrash(s, d);
    }
  }

  private async reportCrash(s: DomState, d: XlDomain): Promise<void> {
    s.phase = 'crashed';
    s.domid = d.id;
    const at = Date.now();
    try {
      s.def = await this.learnDefinition(s, d.id);
    } catch (e) {
      s.log.warn({ err: e }, 'xen: cannot read the configuration of the crashed domain; recovery domains cannot be started from it');
    }
    const memoryBytes = (s.def?.targetMemKiB ?? d.memMiB * 1024) * 1024;
    s.ref = Object.freeze({ id: s.cfg.name, name: s.cfg.name, memoryBytes });
    s.log.warn({ domid: d.id, state: d.state }, `xen: ${s.cfg.name} crashed`);
    this.ctx?.onCrash({ vm: s.ref, at, reason: `domain ${d.id} state ${d.state} (crashed)` });
  }

  private async learnDefinition(s: DomState, domid: number): Promise<XenDefinition> {
    const config = await this.xl.config(domid);
    const conv = toXlConfig(config, { name: s.cfg.name });
    const def: XenDefinition = Object.freeze({
      backend: 'xen',
      vm: s.cfg.name,
      domid,
      type: conv.type,
      config,
      configFile: s.cfg.configFile,
      maxMemKiB: conv.maxMemKiB,
      targetMemKiB: conv.targetMemKiB,
      disks: conv.disks,
      readAt: new Date().toISOString(),
    });
    if (conv.unmapped.length && !s.cfg.configFile) {
      s.log.warn({ unmapped: conv.unmapped }, 'xen: parts of the domain configuration are not carried over to recovery domains (give configFile to use the original xl.cfg)');
    }
    await this.writeJson(this.defFile(s.cfg.name), def).catch((e) => s.log.warn({ err: e }, 'xen: cannot persist the domain definition'));
    return def;
  }

  private async loadPersistedDefinition(s: DomState): Promise<XenDefinition | null> {
    try {
      const d = JSON.parse(await fsp.readFile(this.defFile(s.cfg.name), 'utf8')) as XenDefinition;
      return isDefinition(d as unknown as VmDefinition) ? d : null;
    } catch {
      return null;
    }
  }

  async list(): Promise<readonly VmRef[]> {
    const all = await this.xl.list().catch(() => [] as XlDomain[]);
    return [...this.doms.values()].map((s) => {
      const d = all.find((x) => x.name === s.cfg.name);
      return s.ref.memoryBytes || !d ? s.ref : Object.freeze({ id: s.cfg.name, name: s.cfg.name, memoryBytes: d.memMiB * MiB });
    });
  }

  // ── the crashed domain ───────────────────────────────────────────────────────

  async capture(vm: VmRef): Promise<CaptureResult> {
    const s = this.state(vm);
    const t0 = performance.now();
    const layout = await this.openDomain(s);
    const openSeconds = (performance.now() - t0) / 1000;
    const regs = await s.helper!.request<{ vcpus: HelperVcpu[] }>('regs');
    const { cpus, errors } = parseVcpus(regs.json.vcpus);
    if (errors.length) s.log.warn({ errors }, 'xen: some vCPU registers could not be read');
    const type = s.def?.type ?? (layout.translated ? 'pvh/hvm' : 'pv');
    s.release = {
      calls: 0,
      requestedPages: 0,
      releasedFrames: 0,
      failedFrames: 0,
      domainPagesDropped: 0,
      xenFreePagesGained: 0,
      seconds: 0,
      callsWithoutEffect: 0,
      mode: !layout.translated && this.o.pvRelease === 'none' ? 'skipped (PV: pvRelease none)' : 'decrease-reservation',
    };
    const info: Record<string, unknown> = {
      source: regs.json.vcpus[0]?.source ?? 'helper',
      domid: s.domid,
      type,
      translated: layout.translated,
      vcpus: cpus.length,
      cr3: cpus.map((c) => `0x${c.cr3.toString(16)}`),
      rip: cpus.map((c) => `0x${(c.regs.rip ?? 0n).toString(16)}`),
      layout: { source: layout.layoutSource, seconds: layout.layoutSeconds, populatedPages: layout.populated, ranges: layout.ranges.length, maxPfn: layout.ranges.at(-1)?.[1] ?? 0 },
      domainPagesAtCrash: layout.nrPages,
      xenFreePagesAtCrash: layout.freePages,
      openSeconds,
      releasesImmediately: layout.translated,
      // Live: updated by every release() (the report is written at the end of the session).
      release: s.release,
      ...(errors.length ? { vcpuErrors: errors } : {}),
    };
    if (s.def) {
      const overheadPages = Math.max(0, layout.nrPages - Math.floor(s.def.targetMemKiB / 4));
      s.def = Object.freeze({ ...s.def, overheadPages });
      info.overheadPages = overheadPages;
    }
    if (this.o.detachDisks) info.detachedDisks = await this.detachDisks(s);
    s.info = info;
    s.phase = 'captured';
    return { cpuNotes: vcpuNotes(cpus), info };
  }

  /** Force-detach the crashed domain's disks: the backend (qdisk QEMU or blkback) lets go of the image. */
  private async detachDisks(s: DomState): Promise<{ vdev: string; ok: boolean; seconds: number; error?: string }[]> {
    const out: { vdev: string; ok: boolean; seconds: number; error?: string }[] = [];
    for (const d of s.def?.disks ?? []) {
      const t0 = performance.now();
      try {
        await this.xl.blockDetach(s.domid!, d.vdev);
        out.push({ vdev: d.vdev, ok: true, seconds: (performance.now() - t0) / 1000 });
      } catch (e) {
        s.log.warn({ err: e, vdev: d.vdev }, 'xen: force-detaching a disk of the crashed domain failed; a recovery domain may not get it');
        out.push({ vdev: d.vdev, ok: false, seconds: (performance.now() - t0) / 1000, error: (e as Error).message });
      }
    }
    return out;
  }

  async openMemory(vm: VmRef): Promise<MemorySource> {
    const s = this.state(vm);
    const layout = await this.openDomain(s);
    s.memory ??= new XenMemorySource(layout, s.helper!, () => this.syncHelper(s), { batchPages: this.o.batchPages, rawPageTables: this.o.rawPageTables });
    // Live, like `release`: the reads' counters end up in the report.
    if (s.info) s.info.reads = s.memory.stats;
    return s.memory;
  }

  async release(vm: VmRef, range: PhysRange): Promise<{ readonly freedBytes: number }> {
    const s = this.state(vm);
    if (s.phase === 'watching') throw new VcvError('VCV_ERR_BACKEND', `xen: refusing to release memory of ${vm.name}, which is not crashed`, { vm: vm.name });
    const layout = await this.openDomain(s);
    const st = s.release!;
    if (!layout.translated && this.o.pvRelease === 'none') {
      s.memory?.markReleased(range);
      return { freedBytes: 0 };
    }
    const batch = 4096;
    let freedPages = 0;
    for (let p = range.start / PAGE_SIZE; p < range.end / PAGE_SIZE; p += batch) {
      const n = Math.min(batch, range.end / PAGE_SIZE - p);
      const r = await s.helper!.request<{ released: number; failed: number; frames: number; seconds: number; nrPagesBefore: number; nrPagesAfter: number; freePagesBefore: number; freePagesAfter: number }>(`release ${p} ${n}`);
      const j = r.json;
      const dropped = j.nrPagesBefore - j.nrPagesAfter;
      st.calls++;
      st.requestedPages += n;
      st.releasedFrames += j.released;
      st.failedFrames += j.failed;
      st.domainPagesDropped += dropped;
      st.xenFreePagesGained += j.freePagesAfter - j.freePagesBefore;
      st.seconds += j.seconds;
      if (j.released > 0 && dropped <= 0) {
        st.callsWithoutEffect++;
        this.warnOnce(`noeffect:${s.cfg.name}:${s.domid}`, s.log, 'xen: decrease_reservation released frames but the domain kept its pages (PV: freed only at destroy)', { released: j.released });
      }
      freedPages += Math.max(0, dropped);
    }
    s.memory?.markReleased(range);
    return { freedBytes: freedPages * PAGE_SIZE };
  }

  releasesImmediately(vm: VmRef): boolean {
    const s = this.state(vm);
    if (s.layout) return s.layout.translated;
    return s.def ? s.def.type !== 'pv' : false;
  }

  async allocatedBytes(vm: VmRef): Promise<number> {
    const s = this.state(vm);
    if (s.domid === null || !s.helper) return 0;
    try {
      const r = await s.helper.request<{ nrPages: number }>('stat');
      return r.json.nrPages * PAGE_SIZE;
    } catch (e) {
      if (isVcvError(e) && e.details.errno === 'ESRCH') return 0;
      throw e;
    }
  }

  async destroy(vm: VmRef): Promise<void> {
    const s = this.state(vm);
    if (s.domid !== null) {
      const d = await this.xl.find(s.domid).catch(() => null);
      if (d && d.name === s.cfg.name) await this.xl.destroy(s.domid);
    }
    await this.closeHelpers(s);
    s.log.info({ domid: s.domid }, 'xen: crashed domain destroyed');
    s.domid = null;
    s.layout = null;
    s.memory = null;
    // Ready for the next crash of a domain with this name (e.g. the recovery domain renamed back).
    s.phase = 'watching';
  }

  async definitionOf(vm: VmRef): Promise<VmDefinition> {
    const s = this.state(vm);
    const def = s.def ?? (await this.loadPersistedDefinition(s));
    if (!def) throw new VcvError('VCV_ERR_BACKEND', `xen: no definition of ${vm.name}: its configuration could not be read at the crash`, { vm: vm.name });
    s.def = def;
    return def as unknown as VmDefinition;
  }

  async reattach(vm: VmRef): Promise<boolean> {
    const s = this.state(vm);
    const d = await this.xl.find(s.cfg.name).catch(() => null);
    if (!d || !isCrashed(d)) return false;
    s.domid = d.id;
    s.phase = 'captured';
    s.def ??= await this.loadPersistedDefinition(s);
    s.ref = vm;
    s.release ??= { calls: 0, requestedPages: 0, releasedFrames: 0, failedFrames: 0, domainPagesDropped: 0, xenFreePagesGained: 0, seconds: 0, callsWithoutEffect: 0, mode: 'decrease-reservation' };
    return true;
  }

  // ── recovery domains ─────────────────────────────────────────────────────────

  private rec(h: VmHandle): RecoveryState {
    const r = this.recoveries.get(h.id);
    if (!r) throw new VcvError('VCV_ERR_RECOVERY', `xen: unknown recovery domain "${h.name}"`, { vm: h.name });
    return r;
  }

  async startVm(defIn: VmDefinition, opts: StartVmOptions): Promise<VmHandle> {
    if (!isDefinition(defIn)) throw new VcvError('VCV_ERR_RECOVERY', 'xen: startVm needs a definition from this backend (definitionOf)', {});
    const def = defIn as XenDefinition;
    await this.ensureStateDir();
    const id = safeName(opts.name);
    const log = this.log.child({ vm: id });
    const cfgOpts = this.doms.get(def.vm)?.cfg;
    const step = this.growGranularityBytes;
    const maxMemKiB = Math.max(def.maxMemKiB, Math.ceil(opts.maxMemoryBytes / 1024));
    const overheadKiB = (def.overheadPages ?? 0) * 4;
    const memoryKiB = this.sizeKiB(opts.memoryBytes, maxMemKiB, overheadKiB);
    if (memoryKiB < 1024) throw new VcvError('VCV_ERR_RECOVERY', `xen: cannot start ${id} with ${opts.memoryBytes} bytes of memory`, { vm: id });
    const existing = await this.xl.find(id).catch(() => null);
    if (existing) throw new VcvError('VCV_ERR_RECOVERY', `xen: a domain named ${id} already exists (domid ${existing.id})`, { vm: id });
    const cfgFile = path.join(this.o.stateDir, `${id}.cfg`);
    const extra: string[] = [];
    if (def.configFile) {
      // The domain's own xl.cfg, with overrides (xl create FILE KEY=VALUE…).
      await fsp.copyFile(def.configFile, cfgFile);
      extra.push(`name=${q(id)}`, `memory=${Math.floor(memoryKiB / 1024)}`, `maxmem=${Math.ceil(maxMemKiB / 1024)}`);
      const cmdline = (def.config.b_info as Record<string, unknown> | undefined)?.cmdline;
      if (cfgOpts?.recovery.cmdline && typeof cmdline === 'string') extra.push(`cmdline=${q(editKernelCmdline(cmdline, cfgOpts.recovery.cmdline))}`);
      extra.push(...(cfgOpts?.recovery.extraConfig ?? []));
    } else {
      const conv = toXlConfig(def.config, { name: id, memoryKiB, maxMemKiB, cmdline: cfgOpts?.recovery.cmdline, extra: cfgOpts?.recovery.extraConfig });
      await fsp.writeFile(cfgFile, `# recovery domain of ${def.vm} (domid ${def.domid}), written by vicover from \`xl list -l\`\n${conv.lines.join('\n')}\n`, { mode: 0o600 });
    }
    const consoleLog = path.join(this.o.consoleDir, `guest-${id}.log`);
    await fsp.rm(consoleLog, { force: true });
    log.info({ memoryMiB: memoryKiB / 1024, maxMemMiB: maxMemKiB / 1024, cfg: cfgFile }, `xen: creating recovery domain ${id}`);
    const domid = await this.xl.create(cfgFile, extra, id, this.o.timeouts.createMs, opts.signal);
    const r: RecoveryState = {
      id,
      name: opts.name,
      vm: def.vm,
      domid,
      restarts: 0,
      cfgFile,
      consoleLog,
      maxMemKiB,
      overheadKiB,
      memoryKiB,
      disks: def.disks,
      startedAt: new Date().toISOString(),
      cgroup: null,
      device: null,
    };
    this.recoveries.set(id, r);
    // qdisk disks: the dom0 QEMU goes into a cgroup of its own at once, so its I/O is measured from the start.
    await this.adoptQdisk(r, log).catch((e) => log.warn({ err: e }, 'xen: the qdisk backend cannot be measured or limited'));
    await this.writeJson(this.recoveryFile(id), r).catch((e) => log.warn({ err: e }, 'xen: cannot persist the recovery domain state'));
    return { id, name: opts.name };
  }

  private async adoptQdisk(r: RecoveryState, log: Logger): Promise<void> {
    const disk = r.disks.find((d) => d.backend === 'qdisk');
    if (!disk) return;
    let pid: number | null = null;
    const domid = r.domid;
    for (let i = 0; i < 50 && pid === null; i++) {
      pid = await qdiskPid(domid);
      if (pid !== null) break;
      // A domain restarted by the toolstack in the meantime has a QEMU of its own (followed later).
      if (i % 10 === 9 && (await this.xl.find(domid).catch(() => null))?.name !== r.id) break;
      await sleep(100);
    }
    if (pid === null) throw new VcvError('VCV_ERR_BACKEND', `xen: no dom0 QEMU serves the qdisk of domain ${domid}`, { domid });
    r.device = await blockDeviceOf(disk.target);
    r.cgroup = await this.cgroups.adopt(r.id, pid);
    log.info({ pid, cgroup: r.cgroup, device: r.device }, 'xen: qdisk backend in its own cgroup (io.max / io.stat)');
  }

  /**
   * KiB of `memory` for a domain allowed `bytes` of host memory: in growth steps, below the domain's
   * own overhead pages unless it gets all of maxmem (then the crashed domain is gone).
   */
  private sizeKiB(bytes: number, maxMemKiB: number, overheadKiB: number): number {
    const stepKiB = this.growGranularityBytes / 1024;
    if (bytes / 1024 >= maxMemKiB) return maxMemKiB;
    return Math.min(maxMemKiB, Math.floor((bytes / 1024 - overheadKiB) / stepKiB) * stepKiB);
  }

  /**
   * Follow a recovery domain that the toolstack restarted: a domain that reboots — or triple-faults
   * early in boot, as PVH guests under nested TCG sometimes do — is destroyed and created again by
   * libxl under the same name and a new domid, with the memory of its configuration. Resolves with
   * the current domid (the same one when nothing happened); throws when no domain has had the name
   * for as long as a create may take.
   */
  private follow(r: RecoveryState, listed?: XlDomain | null): Promise<number> {
    // One at a time per domain: the scheduler's tick, a resize and a measurement may all notice.
    const busy = this.following.get(r.id);
    if (busy) return busy;
    const p = this.followOnce(r, listed).finally(() => this.following.delete(r.id));
    this.following.set(r.id, p);
    return p;
  }

  /**
   * For the scheduler's tick (throttleVm, vmIoStats): start following a restart, do not wait for it.
   * A domain that is really gone keeps follow() looking for up to `timeouts.createMs`, and the tick
   * would stall that long; the ticks after it see what follow() found.
   */
  private followLater(r: RecoveryState): void {
    void this.follow(r).catch(() => undefined);
  }

  private async followOnce(r: RecoveryState, listed?: XlDomain | null): Promise<number> {
    let d = listed === undefined ? await this.xl.find(r.id) : listed;
    // Between destroying the old domain and creating the new one the name is listed by neither.
    // Not past stopVm(): the domain was destroyed on purpose.
    const live = () => this.recoveries.get(r.id) === r;
    for (const end = Date.now() + this.o.timeouts.createMs; !d && Date.now() < end && live(); d = await this.xl.find(r.id)) {
      await sleep(500);
    }
    if (!live()) throw new VcvError('VCV_ERR_RECOVERY', `xen: the recovery domain ${r.id} was stopped`, { vm: r.id, domid: r.domid });
    if (!d) throw new VcvError('VCV_ERR_RECOVERY', `xen: the recovery domain ${r.id} (domid ${r.domid}) is gone`, { vm: r.id, domid: r.domid });
    if (d.id === r.domid) return d.id;
    const was = r.domid;
    r.domid = d.id;
    r.restarts++;
    this.log.warn({ vm: r.id, was, domid: d.id, restarts: r.restarts }, `xen: the toolstack restarted the recovery domain ${r.id} as domid ${d.id} (it rebooted or faulted in boot); following it`);
    // The old incarnation's I/O stays counted: its cgroup's final counters (they outlive its QEMU), or
    // what was last read of its blkback devices (gone with the domain).
    const last = r.cgroup && r.device ? await this.cgroups.stats(r.cgroup, r.device) : r.ioLast;
    r.ioBase = addIo(r.ioBase ?? NO_IO, last ?? NO_IO);
    r.ioLast = undefined;
    r.blkbackSeen = false;
    // The restart took the memory of the configuration: the handed-over target again.
    await this.memSet(d.id, r.memoryKiB);
    if (r.cgroup) await this.cgroups.remove(r.cgroup);
    r.cgroup = null;
    await this.adoptQdisk(r, this.log.child({ vm: r.id })).catch((e) => this.log.warn({ err: e }, 'xen: the qdisk backend cannot be measured or limited'));
    // And the I/O limit the policy last set, on the new backend.
    if (r.limits && r.cgroup && r.device) await this.cgroups.limit(r.cgroup, r.device, r.limits).catch((e) => this.log.warn({ err: e }, 'xen: the I/O limit cannot be set again'));
    await this.writeJson(this.recoveryFile(r.id), r).catch(() => undefined);
    return d.id;
  }

  /**
   * `xl mem-set` on a recovery domain. One the toolstack is still building (a restart) is listed
   * before libxl has stored its configuration, and mem-set refuses it until then ("unable to retrieve
   * domain configuration"): retried for as long as a create may take.
   */
  private async memSet(domid: number, kib: number): Promise<void> {
    for (const end = Date.now() + this.o.timeouts.createMs; ; ) {
      try {
        return await this.xl.memSet(domid, kib);
      } catch (e) {
        if (Date.now() > end || !/retrieve domain configuration/.test((e as Error).message)) throw e;
        await sleep(500);
      }
    }
  }

  /** Run an xl call on the recovery domain; when it fails because the domid is gone, follow a restart and retry once. */
  private async onRecovery<T>(r: RecoveryState, call: (domid: number) => Promise<T>): Promise<T> {
    const domid = r.domid;
    try {
      return await call(domid);
    } catch (e) {
      const now = await this.follow(r).catch(() => domid);
      if (now === domid) throw e;
      return call(now);
    }
  }

  async resizeVm(h: VmHandle, memoryBytes: number): Promise<void> {
    const r = this.rec(h);
    const kib = this.sizeKiB(memoryBytes, r.maxMemKiB, r.overheadKiB);
    if (kib === r.memoryKiB) return;
    const before = r.memoryKiB;
    r.memoryKiB = kib; // a restart followed inside sets this target
    try {
      await this.onRecovery(r, (domid) => this.memSet(domid, kib));
    } catch (e) {
      r.memoryKiB = before;
      throw e;
    }
    await this.writeJson(this.recoveryFile(r.id), r).catch(() => undefined);
  }

  async throttleVm(h: VmHandle, limits: IoLimits | null): Promise<void> {
    const r = this.rec(h);
    r.limits = limits;
    // A backend gone means a restarted domain: the limit goes to its new backend, which follow()
    // sets up and limits with r.limits when it finds the new domain.
    if (r.cgroup && !(await this.cgroups.populated(r.cgroup))) {
      this.followLater(r);
      return;
    }
    if (r.cgroup && r.device) {
      await this.cgroups.limit(r.cgroup, r.device, limits);
      return;
    }
    if (limits) this.warnOnce(`nothrottle:${r.id}`, this.log, `xen: ${r.name}'s disk is served by blkback (a kernel thread): its I/O cannot be limited; only the dump writer is throttled`);
  }

  /** Cumulative over the domain's incarnations: a toolstack restart (new domid, new disk backend) does not make the counters go back. */
  async vmIoStats(h: VmHandle): Promise<IoStats> {
    const r = this.rec(h);
    const cur = await this.incarnationIo(r);
    if (cur === null) {
      // Its disk backend is gone: the toolstack restarted the domain (or it is going away). Until
      // follow() has found the new one, the last counters read; follow() then adds the old
      // incarnation's final counters to ioBase, so the sum never goes back.
      this.followLater(r);
      return addIo(r.ioBase ?? NO_IO, r.ioLast ?? NO_IO);
    }
    r.ioLast = cur;
    return addIo(r.ioBase ?? NO_IO, cur);
  }

  /** The current incarnation's disk I/O, or null when its backend is gone (an emptied qdisk cgroup, a vanished blkback device). */
  private async incarnationIo(r: RecoveryState): Promise<IoStats | null> {
    if (r.cgroup && r.device) return (await this.cgroups.populated(r.cgroup)) ? this.cgroups.stats(r.cgroup, r.device) : null;
    let sum = NO_IO;
    let missing = false;
    let seen = false;
    for (const d of r.disks) {
      const dev = vdevId(d.vdev);
      if (dev === null) continue;
      const st = await blkbackStats(r.domid, dev);
      if (st) {
        sum = addIo(sum, st);
        seen = true;
      } else missing = true;
    }
    if (missing && r.blkbackSeen) return null; // devices this incarnation had are gone
    if (seen) r.blkbackSeen = true;
    return sum;
  }

  /** The recovery domain's facts for the report: its current domid and how often the toolstack restarted it. */
  vmInfo(h: VmHandle): Readonly<Record<string, unknown>> {
    const r = this.rec(h);
    return { domid: r.domid, restarts: r.restarts };
  }

  async vmAllocatedBytes(h: VmHandle): Promise<number> {
    const r = this.rec(h);
    const helper = [...this.doms.values()].find((s) => s.helper)?.helper;
    if (helper) {
      const j = await helper.request<{ nrPages: number }>(`dominfo ${r.domid}`).catch(() => null);
      if (j) return j.json.nrPages * PAGE_SIZE;
    }
    // By name: a domain restarted by the toolstack has a new domid.
    const d = await this.xl.find(r.id);
    if (d && d.id !== r.domid) await this.follow(r, d).catch(() => undefined);
    return d ? d.memMiB * MiB : 0;
  }

  async stopVm(h: VmHandle): Promise<void> {
    const r = this.rec(h);
    const d = await this.xl.find(r.id).catch(() => null);
    if (d) await this.xl.destroy(d.id);
    if (r.cgroup) await this.cgroups.remove(r.cgroup);
    await fsp.rm(this.recoveryFile(r.id), { force: true });
    this.recoveries.delete(r.id);
  }

  watchConsole(h: VmHandle, onLine: (line: string) => void): () => void {
    return followFile(this.rec(h).consoleLog, onLine, { fromStart: true });
  }

  endpointsOf(): Readonly<Record<string, string>> {
    return {};
  }

  /** The domid of a recovery domain (tests). */
  domidOf(h: VmHandle): number {
    return this.rec(h).domid;
  }
}
