/**
 * The daemon: starts the backend, turns each crash into a CrashSession, runs sessions side by side up
 * to `sessions.maxConcurrent` and queues the rest. On start it resumes sessions a previous daemon left
 * unfinished. `stop()` (SIGTERM): no new crashes, sessions in flight are checkpointed (their journal
 * lets the next daemon continue), `shutdown` taps run.
 */
import type { Backend, CrashEvent } from './contracts.js';
import type { Vicover } from './core.js';
import { CrashSession, type SessionOptions } from './session.js';
import type { CrashReport } from './report.js';
import { findUnfinished } from './journal.js';
import { isVcvError } from '@vicover/errors';

export interface DaemonOptions {
  core: Vicover;
  /** Extra session options (tests, the demo's progress callbacks). */
  sessionOptions?: Partial<Omit<SessionOptions, 'core' | 'event' | 'backend'>>;
  /** Called when a session ends (with its report). */
  onReport?: (r: CrashReport, s: CrashSession) => void;
  onSessionStart?: (s: CrashSession) => void;
}

export class Daemon {
  readonly core: Vicover;
  readonly backend: Backend;
  private readonly running = new Set<CrashSession>();
  private readonly queue: CrashEvent[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private accepting = false;
  private stopping: Promise<void> | null = null;
  readonly reports: CrashReport[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly o: DaemonOptions) {
    this.core = o.core;
    this.backend = o.core.backend();
  }

  async start(): Promise<void> {
    this.accepting = true;
    const log = this.core.log;
    // Sessions a previous daemon left behind first: their memory is still held.
    for (const u of await findUnfinished(this.core.config.dump.dir)) {
      if (u.journal.backend !== this.backend.name) continue;
      log.warn({ session: u.journal.sessionId, vm: u.journal.vm.name }, 'found an unfinished crash session; resuming it');
      this.launch(u.journal.event, { resume: u });
    }
    await this.backend.start({ onCrash: (e) => this.onCrash(e) });
    const vms = await this.backend.list().catch(() => []);
    log.info({ backend: this.backend.name, vms: vms.map((v) => v.name), mode: this.core.config.mode, simulated: this.backend.simulated === true }, `watching ${vms.length} VM(s)`);
  }

  private onCrash(e: CrashEvent): void {
    if (!this.accepting) {
      this.core.log.warn({ vm: e.vm.name }, 'crash reported while shutting down; left for the next daemon');
      return;
    }
    if (this.running.size < this.core.config.sessions.maxConcurrent) {
      this.launch(e);
    } else if (this.queue.length < this.core.config.sessions.maxQueued) {
      this.core.log.info({ vm: e.vm.name, queued: this.queue.length + 1 }, 'crash queued: all session slots busy');
      this.queue.push(e);
    } else {
      this.core.log.warn({ vm: e.vm.name }, 'crash queue full: handling this crash restart-only');
      this.launch(e, { mode: 'restart-only' });
    }
  }

  private launch(event: CrashEvent, extra: Partial<SessionOptions> = {}): void {
    const s = new CrashSession({ ...(this.o.sessionOptions ?? {}), ...extra, core: this.core, event, backend: this.backend });
    this.running.add(s);
    this.o.onSessionStart?.(s);
    const p = s
      .run()
      .then((r) => {
        this.reports.push(r);
        this.o.onReport?.(r, s);
      })
      .catch((e) => this.core.log.error({ err: e, code: isVcvError(e) ? e.code : undefined }, 'session crashed'))
      .finally(() => {
        this.running.delete(s);
        this.inFlight.delete(p);
        const next = this.accepting ? this.queue.shift() : undefined;
        if (next) this.launch(next);
        if (this.running.size === 0 && this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
    this.inFlight.add(p);
  }

  /** Resolves when no session runs and none is queued. */
  idle(): Promise<void> {
    if (this.running.size === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  get sessions(): readonly CrashSession[] {
    return [...this.running];
  }

  /** Graceful stop: stop taking crashes, checkpoint sessions in flight, run shutdown taps. */
  stop(reason = 'stop', signal?: string): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      this.accepting = false;
      this.core.log.info({ reason, signal, sessions: this.running.size, queued: this.queue.length }, 'daemon stopping');
      await this.backend.stop().catch((e) => this.core.log.warn({ err: e }, 'backend stop failed'));
      for (const s of this.running) s.stop();
      await Promise.allSettled([...this.inFlight]);
      await this.core.hooks.shutdown.promise({ reason, signal }).catch((e) => this.core.log.error({ err: e }, 'a shutdown tap failed'));
      this.core.log.info('daemon stopped');
    })();
    return this.stopping;
  }
}
