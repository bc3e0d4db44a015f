/**
 * The `shared-fs` recovery strategy: the recovery VM is the crashed VM started again on the *same*
 * disk (the crashed QEMU has quit, so the disk lock is free; the filesystem replays its journal), with
 * the host memory available now, grown as the crashed VM's memory is handed over.
 *
 *   onCrash [RECOVERY]  mode vicover: start the recovery VM with min(size, budget − crashed RAM still
 *                       allocated) — measured — if that reaches minStartMiB; the start and the health
 *                       check run in the background (the dump is never blocked on either)
 *   onMemoryReclaimed   grow it to min(size, budget − crashed RAM still allocated); start it when it
 *                       has not started yet (coredump-restart and restart-only start here, at the
 *                       final handover, with all memory)
 *   health check passes session.recovered(check) → onRecovered
 *
 * Invariant (the host-memory budget): crashed-VM RAM still allocated + memory the recovery VM may use
 * ≤ budget. The crashed VM's allocation only shrinks (it is dead; reading holes allocates nothing), so
 * sizing the recovery VM from a measurement taken before each grow keeps the sum within the budget at
 * every moment — whatever the recovery guest touches.
 */
import { STAGE, type CrashSession, type ReclaimInfo, type Vicover, type VicoverPlugin, type VmHandle } from '@vicover/core';
import { VcvError, isVcvError } from '@vicover/errors';
import { expand, probeHttp, probeTcp, type HealthOptions } from './health.js';

export const PLUGIN_NAME = 'shared-fs';
const MiB = 1024 * 1024;

export interface SharedFsOptions {
  /** Recovery VM name; `{vm}` and `{session}` are replaced. */
  readonly name: string;
  /** Do not start a recovery VM with less memory than this (MiB); wait for more to be handed over. */
  readonly minStartMiB: number;
  readonly health: HealthOptions;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, default: '{session}-recovery', description: 'recovery VM name; {vm} and {session} are replaced' },
    minStartMiB: { type: 'integer', minimum: 1, default: 256, description: 'least memory (MiB) to start a recovery VM with; below it, wait for memory to be handed over' },
    health: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'when the service counts as back',
      properties: {
        type: { enum: ['http', 'tcp', 'serial'], default: 'http', description: 'http GET, tcp connect, or a serial console line' },
        url: { type: 'string', minLength: 1, default: 'http://{tcp/80}/', description: 'http: URL to GET; {tcp/80} is the host endpoint forwarded to guest port 80' },
        expectStatus: { type: 'integer', minimum: 100, maximum: 599, default: 200, description: 'http: the status that counts as healthy' },
        bodyRegex: { type: 'string', minLength: 1, description: 'http: the body must match this regular expression' },
        target: { type: 'string', minLength: 1, description: 'tcp: host:port or {tcp/22}' },
        lineRegex: { type: 'string', minLength: 1, description: 'serial: a console line matching this regular expression' },
        intervalMs: { type: 'integer', minimum: 10, default: 250, description: 'time between probes' },
        requestTimeoutMs: { type: 'integer', minimum: 50, default: 2000, description: 'timeout of one probe' },
      },
    },
  },
} as const;

interface SessionState {
  vm: VmHandle | null;
  starting: Promise<void> | null;
  /** The start tried at onCrash, running in the background (never rejects). */
  background: Promise<void> | null;
  memoryBytes: number;
  stopHealth: (() => void) | null;
  lastStartError?: string;
}

function stateOf(s: CrashSession): SessionState {
  let st = s.data.get(PLUGIN_NAME) as SessionState | undefined;
  if (!st) {
    st = { vm: null, starting: null, background: null, memoryBytes: 0, stopHealth: null };
    s.data.set(PLUGIN_NAME, st);
  }
  return st;
}

export function describeCheck(h: HealthOptions, endpoints: Readonly<Record<string, string>>): string {
  if (h.type === 'http') return `GET ${expand(h.url ?? 'http://{tcp/80}/', endpoints)} → ${h.expectStatus}${h.bodyRegex ? ` /${h.bodyRegex}/` : ''}`;
  if (h.type === 'tcp') return `tcp ${expand(h.target ?? '', endpoints)}`;
  return `serial /${h.lineRegex}/`;
}

class SharedFs {
  private readonly log;
  private readonly stops = new Set<() => void>();

  constructor(
    private readonly core: Vicover,
    private readonly o: SharedFsOptions,
  ) {
    this.log = core.logger(PLUGIN_NAME);
    if (o.health.type === 'tcp' && !o.health.target) throw new VcvError('VCV_ERR_PLUGIN_OPTIONS', 'shared-fs: health.type tcp needs health.target', { plugin: PLUGIN_NAME });
    if (o.health.type === 'serial' && !o.health.lineRegex) throw new VcvError('VCV_ERR_PLUGIN_OPTIONS', 'shared-fs: health.type serial needs health.lineRegex', { plugin: PLUGIN_NAME });
  }

  apply(): void {
    const hooks = this.core.hooks;
    hooks.onCrash.tapPromise({ name: PLUGIN_NAME, stage: STAGE.RECOVERY }, async (s) => {
      if (s.mode !== 'vicover' || !s.backend) return;
      // Started in the background: creating a VM can take longer than the dump (a toolstack's
      // create), and the dump must not wait for it. The next reclaim waits for the start instead.
      const st = stateOf(s);
      st.background = this.tryStart(s, false)
        .catch(() => undefined)
        .finally(() => (st.background = null));
    });
    hooks.onMemoryReclaimed.tapPromise(PLUGIN_NAME, async (r, s) => this.onReclaim(r, s));
    hooks.shutdown.tapPromise(PLUGIN_NAME, async () => {
      for (const stop of [...this.stops]) stop();
    });
  }

  /** Memory the recovery VM may have now: min(size, budget − crashed RAM still allocated), measured. */
  private async available(s: CrashSession, final: boolean): Promise<number> {
    const size = s.vm.memoryBytes;
    if (final) return size;
    const crashed = await s.backend!.allocatedBytes(s.vm);
    return Math.max(0, Math.min(size, s.budget.budgetBytes - crashed));
  }

  private async onReclaim(r: ReclaimInfo, s: CrashSession): Promise<void> {
    if (!s.backend) return;
    const st = stateOf(s);
    if (st.background) await st.background;
    if (st.starting) await st.starting.catch(() => undefined);
    if (!st.vm) {
      await this.tryStart(s, r.final);
      return;
    }
    const target = await this.available(s, r.final);
    if (target <= st.memoryBytes) return;
    await s.backend.resizeVm(st.vm, target).catch((e) => {
      throw isVcvError(e) ? e : new VcvError('VCV_ERR_RECOVERY', `shared-fs: growing ${st.vm!.name} failed: ${(e as Error).message}`, {}, { cause: e });
    });
    st.memoryBytes = target;
    s.recoveryResized(target);
    this.log.debug({ vm: s.vm.name, memoryMiB: Math.round(target / MiB), handedOverMiB: Math.round(r.handedOverBytes / MiB) }, 'recovery VM grown');
  }

  private async tryStart(s: CrashSession, final: boolean): Promise<void> {
    const st = stateOf(s);
    if (st.vm || st.starting) return;
    const memoryBytes = await this.available(s, final);
    if (memoryBytes < Math.min(this.o.minStartMiB * MiB, s.vm.memoryBytes)) {
      this.log.info({ vm: s.vm.name, availableMiB: Math.round(memoryBytes / MiB), minStartMiB: this.o.minStartMiB }, 'not enough host memory for the recovery VM yet; it starts when more is handed over');
      return;
    }
    st.starting = (async () => {
      const backend = s.backend!;
      const def = await backend.definitionOf(s.vm);
      const name = this.o.name.replace(/\{vm\}/g, s.vm.name).replace(/\{session\}/g, s.id);
      const vm = await backend.startVm(def, { name, memoryBytes, maxMemoryBytes: s.vm.memoryBytes, signal: s.signal });
      st.vm = vm;
      st.memoryBytes = memoryBytes;
      s.setRecoveryVm(vm, { initialBytes: memoryBytes });
      this.log.info({ vm: s.vm.name, recovery: vm.name, memoryMiB: Math.round(memoryBytes / MiB), ofMiB: Math.round(s.vm.memoryBytes / MiB) }, 'recovery VM started');
      this.startHealth(s, vm);
    })();
    try {
      await st.starting;
    } catch (e) {
      const msg = `shared-fs: starting the recovery VM failed: ${(e as Error).message}`;
      st.lastStartError = msg;
      // Before the final handover a failed start must not stop the dump: retry at the next reclaim.
      if (!final) s.warn(isVcvError(e) ? e.code : 'VCV_ERR_RECOVERY', `${msg} (retrying when more memory is handed over)`, PLUGIN_NAME);
      else throw isVcvError(e) ? e : new VcvError('VCV_ERR_RECOVERY', msg, {}, { cause: e });
    } finally {
      st.starting = null;
    }
  }

  /** Probe until healthy (background; never throws). */
  private startHealth(s: CrashSession, vm: VmHandle): void {
    const h = this.o.health;
    const backend = s.backend!;
    const st = stateOf(s);
    const endpoints = backend.endpointsOf?.(vm) ?? {};
    let check: string;
    try {
      check = describeCheck(h, endpoints);
    } catch (e) {
      s.warn('VCV_ERR_RECOVERY', (e as Error).message, PLUGIN_NAME);
      return;
    }
    const deadline = Date.now() + this.core.config.sessions.recoveryTimeoutSec * 1000;
    let stopped = false;
    let unwatch: (() => void) | null = null;
    const stop = () => {
      stopped = true;
      unwatch?.();
      this.stops.delete(stop);
    };
    st.stopHealth = stop;
    this.stops.add(stop);
    const pass = (detail: string) => {
      if (stopped) return;
      stop();
      this.log.info({ vm: s.vm.name, recovery: vm.name, check, detail, atSeconds: Math.round(s.elapsedMs()) / 1000 }, 'health check passed');
      void s.recovered(check).catch(() => undefined);
    };
    if (h.type === 'serial') {
      if (!backend.watchConsole) {
        s.warn('VCV_ERR_RECOVERY', `shared-fs: the ${backend.name} backend cannot follow a console; the serial health check cannot run`, PLUGIN_NAME);
        return;
      }
      const re = new RegExp(h.lineRegex!);
      unwatch = backend.watchConsole(vm, (line) => {
        if (re.test(line)) pass(line.slice(0, 200));
      });
      const t = setTimeout(() => {
        if (!stopped) {
          stop();
          this.log.warn({ vm: s.vm.name, check }, 'health check timed out');
        }
      }, Math.max(0, deadline - Date.now()));
      t.unref?.();
      return;
    }
    const bodyRegex = h.bodyRegex ? new RegExp(h.bodyRegex) : undefined;
    const target = h.type === 'http' ? expand(h.url ?? 'http://{tcp/80}/', endpoints) : expand(h.target!, endpoints);
    void (async () => {
      let last = '';
      while (!stopped && Date.now() < deadline) {
        const r = h.type === 'http' ? await probeHttp(target, { expectStatus: h.expectStatus, bodyRegex, timeoutMs: h.requestTimeoutMs }) : await probeTcp(target, h.requestTimeoutMs);
        if (stopped) return;
        if (r.ok) return pass(r.detail);
        if (r.detail !== last) this.log.debug({ vm: s.vm.name, check, result: r.detail }, 'health check not passing yet');
        last = r.detail;
        await new Promise((res) => setTimeout(res, h.intervalMs));
      }
      if (!stopped) {
        stop();
        this.log.warn({ vm: s.vm.name, check, last }, 'health check timed out');
      }
    })();
  }
}

const plugin: VicoverPlugin<SharedFsOptions> = {
  name: PLUGIN_NAME,
  coreVersion: '^0.1.0',
  description: 'Shared-FS recovery: the crashed VM started again on the same disk, grown as memory is handed over, health-checked',
  optionsSchema,
  apply(core: Vicover, options: SharedFsOptions) {
    new SharedFs(core, options).apply();
  },
};

export default plugin;
