/**
 * Starting the copy helper without Node's fork (native/spawn.c → native/build/vicover-spawn.node).
 *
 * `child_process.spawn` forks the whole Node process: its page tables are copied (~17 ms for a dump
 * process with ~60 MiB resident, on the VMs measured) and, once the child has exec'd, the first write
 * to each of the parent's pages is a write-protect fault (~1 700 in a `vicover dump -d 31` of a 4 GiB
 * guest, ~14 µs each there; `node bench/spawn-cow.mjs`). posix_spawn (vfork semantics) does neither.
 *
 * `spawnPiped()` returns the part of a ChildProcess the copier uses: stdin/stdout/stderr streams over
 * pipes, the 'exit' event with (code, signal), `exitCode`/`signalCode`, and 'error' never (a failed
 * start throws at once). The child is reaped with waitpid once both of its output pipes have closed.
 * Optional: without the addon (not built, or VICOVER_NATIVE_SPAWN=0) callers use child_process.spawn.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

interface SpawnAddon {
  spawnPiped(path: string, fd3: number, fd4: number): [number, number, number, number];
  waitChild(pid: number): [number, number] | null;
}

/** What the copier needs of its helper process; a ChildProcess started with three pipes has it too. */
export interface HelperProcess extends EventEmitter {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
}

let addon: SpawnAddon | null | undefined;

/** The addon, or null when it was not built (or VICOVER_NATIVE_SPAWN=0). */
export function nativeSpawn(): SpawnAddon | null {
  if (process.env.VICOVER_NATIVE_SPAWN === '0') return null;
  if (addon !== undefined) return addon;
  addon = null;
  const file = process.env.VICOVER_NATIVE_SPAWN_BIN || fileURLToPath(new URL('../native/build/vicover-spawn.node', import.meta.url));
  try {
    const m = createRequire(import.meta.url)(file) as SpawnAddon;
    if (typeof m.spawnPiped === 'function' && typeof m.waitChild === 'function') addon = m;
  } catch {
    // not built: child_process.spawn
  }
  return addon;
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(osConstants.signals).map(([k, v]) => [v as number, k as NodeJS.Signals]));

class PosixChild extends EventEmitter implements HelperProcess {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly stdin: Socket;
  readonly stdout: Socket;
  readonly stderr: Socket;

  constructor(
    private readonly native: SpawnAddon,
    readonly pid: number,
    fds: readonly [number, number, number],
  ) {
    super();
    this.stdin = new Socket({ fd: fds[0], readable: false, writable: true });
    this.stdout = new Socket({ fd: fds[1], readable: true, writable: false });
    this.stderr = new Socket({ fd: fds[2], readable: true, writable: false });
    let open = 2;
    const closed = (): void => {
      if (--open === 0) this.reap(1);
    };
    this.stdout.once('close', closed);
    this.stderr.once('close', closed);
  }

  /** Both output pipes are closed: the child has exited or is about to. Poll waitpid until it has. */
  private reap(delayMs: number): void {
    let r: [number, number] | null;
    try {
      r = this.native.waitChild(this.pid);
    } catch {
      r = [-1, 0]; // already reaped by someone else: report an unknown exit rather than wait forever
    }
    if (r === null) {
      setTimeout(() => this.reap(Math.min(delayMs * 2, 100)), delayMs);
      return;
    }
    const [code, sig] = r;
    this.signalCode = sig ? (SIGNAL_NAMES.get(sig) ?? null) : null;
    this.exitCode = sig ? null : code;
    this.stdin.destroy();
    this.emit('exit', this.exitCode, this.signalCode);
  }
}

/**
 * Start `path` (no arguments) with pipes on 0/1/2 and this process's `fd3`/`fd4` as its 3 and 4 (-1:
 * none). Throws (ENOENT, EACCES, …) when it cannot start.
 */
export function spawnPiped(native: SpawnAddon, path: string, fd3: number, fd4: number): HelperProcess {
  const [pid, stdinFd, stdoutFd, stderrFd] = native.spawnPiped(path, fd3, fd4);
  return new PosixChild(native, pid, [stdinFd, stdoutFd, stderrFd]);
}
