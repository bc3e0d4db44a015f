/**
 * The Xen toolstack through its command-line tools: `xl` (list, list -l, create, destroy, mem-set,
 * block-detach, sysrq) and `xenstore-watch`. Every call has a timeout; failures are coded errors
 * carrying xl's own message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { VcvError } from '@vicover/errors';
import { run } from '@vicover/hostutil';

export interface XlDomain {
  readonly name: string;
  readonly id: number;
  readonly memMiB: number;
  readonly vcpus: number;
  /** Six flags: r b p s c d (running, blocked, paused, shutdown, crashed, dying); '-' when unset. */
  readonly state: string;
  readonly cpuSeconds: number;
}

/** Parse `xl list` (the name may contain spaces; the last five columns are fixed). */
export function parseXlList(text: string): XlDomain[] {
  const out: XlDomain[] = [];
  for (const line of text.split('\n')) {
    const m = /^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+([-rbpscd]{6})\s+([\d.]+)\s*$/.exec(line);
    if (!m) continue;
    out.push({ name: m[1]!.trim(), id: Number(m[2]), memMiB: Number(m[3]), vcpus: Number(m[4]), state: m[5]!, cpuSeconds: Number(m[6]) });
  }
  return out;
}

export const isCrashed = (d: XlDomain): boolean => d.state[4] === 'c';
export const isDying = (d: XlDomain): boolean => d.state[5] === 'd';

export interface XlOptions {
  /** The xl binary (default `xl`). */
  readonly xl: string;
  readonly timeoutMs: number;
}

export class Xl {
  constructor(private readonly o: XlOptions) {}

  private xl(args: readonly string[], timeoutMs = this.o.timeoutMs, signal?: AbortSignal) {
    return run(this.o.xl, args, { timeoutMs, signal, maxBuffer: 64 << 20 }); // `xl list -l` of many domains is large
  }

  async list(): Promise<XlDomain[]> {
    return parseXlList((await this.xl(['list'])).stdout);
  }

  async find(nameOrId: string | number): Promise<XlDomain | null> {
    const all = await this.list();
    return all.find((d) => (typeof nameOrId === 'number' ? d.id === nameOrId : d.name === nameOrId)) ?? null;
  }

  /** `xl list -l DOMID`: the domain's libxl configuration (JSON), as xl keeps it for the domain. */
  async config(domid: number): Promise<Record<string, unknown>> {
    const { stdout } = await this.xl(['list', '-l', String(domid)]);
    let parsed: unknown;
    try {
      parsed = JSON.parse(stdout);
    } catch {
      throw new VcvError('VCV_ERR_BACKEND', `xen: xl list -l ${domid} did not print JSON (is output_format="json" in xl.conf?)`, { domid, sample: stdout.slice(0, 200) });
    }
    const entry = Array.isArray(parsed) ? (parsed as { domid?: number; config?: unknown }[]).find((e) => e.domid === domid) : null;
    if (!entry || typeof entry.config !== 'object' || entry.config === null) {
      throw new VcvError('VCV_ERR_BACKEND', `xen: xl list -l ${domid} has no configuration for the domain`, { domid });
    }
    return entry.config as Record<string, unknown>;
  }

  /** `xl create FILE [KEY=VALUE…]`; resolves with the new domain's id. */
  async create(file: string, extra: readonly string[], name: string, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    await this.xl(['create', file, ...extra], timeoutMs, signal);
    const d = await this.find(name);
    if (!d) throw new VcvError('VCV_ERR_RECOVERY', `xen: xl create ${file} succeeded but no domain "${name}" is listed`, { name });
    return d.id;
  }

  async destroy(domid: number, timeoutMs?: number): Promise<void> {
    await this.xl(['destroy', String(domid)], timeoutMs);
  }

  /** Set the balloon target (KiB). */
  async memSet(domid: number, kib: number): Promise<void> {
    await this.xl(['mem-set', String(domid), `${Math.floor(kib)}k`]);
  }

  /** Force-detach a virtual disk (the frontend is dead and will not answer). */
  async blockDetach(domid: number, vdev: string): Promise<void> {
    await this.xl(['block-detach', '-f', String(domid), vdev]);
  }

  async rename(domid: number, name: string): Promise<void> {
    await this.xl(['rename', String(domid), name]);
  }
}

/**
 * Follow a xenstore watch (`xenstore-watch PATH`), e.g. `@releaseDomain`, which fires on every domain
 * crash, shutdown and destruction. Calls `onEvent` per event line; restarts the watcher if it exits.
 * Returns a function that stops it.
 */
export function watchXenstore(path: string, onEvent: () => void, o: { bin?: string; restartMs?: number; onError?: (msg: string) => void } = {}): () => void {
  let child: ChildProcess | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const start = () => {
    if (stopped) return;
    const c = spawn(o.bin ?? 'xenstore-watch', [path], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    let err = '';
    c.stdout!.on('data', () => onEvent());
    c.stderr!.on('data', (d) => (err = (err + d).slice(-400)));
    c.on('error', (e) => o.onError?.(`xenstore-watch: ${e.message}`));
    c.on('exit', (code, signal) => {
      child = null;
      if (stopped) return;
      o.onError?.(`xenstore-watch ${path} exited (${code ?? signal}) ${err.trim()}`);
      timer = setTimeout(start, o.restartMs ?? 2000);
      timer.unref?.();
    });
  };
  start();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    child?.kill('SIGTERM');
  };
}
