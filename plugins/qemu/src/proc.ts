/**
 * QEMU processes seen through /proc: find the one serving a QMP socket, read its command line and
 * binary (how to start the VM again), and wait for it to exit. Processes are only ever signalled after
 * checking that /proc/PID/cmdline still names the VM's QMP socket (pids are reused).
 */
import { promises as fsp, readFileSync } from 'node:fs';

export interface ProcInfo {
  readonly pid: number;
  /** argv[1…] as QEMU got it. */
  readonly argv: readonly string[];
  /** argv[0]. */
  readonly argv0: string;
  /** /proc/PID/exe, when readable (absolute path of the binary). */
  readonly exe: string | null;
}

export async function readProc(pid: number): Promise<ProcInfo | null> {
  try {
    const raw = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (!raw) return null; // zombie or kernel thread
    const parts = raw.split('\0');
    if (parts[parts.length - 1] === '') parts.pop();
    const exe = await fsp.readlink(`/proc/${pid}/exe`).catch(() => null);
    return { pid, argv0: parts[0] ?? '', argv: parts.slice(1), exe: exe?.replace(/ \(deleted\)$/, '') ?? null };
  } catch {
    return null;
  }
}

/** True while the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The pid in a QEMU -pidfile, if the file exists and holds a number. */
export async function readPidfile(file: string): Promise<number | null> {
  try {
    const n = Number.parseInt((await fsp.readFile(file, 'utf8')).trim(), 10);
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** True when the process's command line mentions `needle` (e.g. its QMP socket path). */
export async function cmdlineMentions(pid: number, needle: string): Promise<boolean> {
  const p = await readProc(pid);
  return !!p && p.argv.some((a) => a.includes(needle));
}

/** Scan /proc for the QEMU whose command line mentions `needle` (its QMP socket). */
export async function findQemuByArg(needle: string): Promise<ProcInfo | null> {
  let entries: string[];
  try {
    entries = await fsp.readdir('/proc');
  } catch {
    return null;
  }
  const found: ProcInfo[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const p = await readProc(Number(e));
    if (p && p.argv.some((a) => a.includes(needle))) found.push(p);
  }
  // Prefer the QEMU binary itself over wrappers (a shell, setpriv before exec, …).
  return found.find((p) => /qemu/.test(p.exe ?? p.argv0)) ?? found[0] ?? null;
}

/** Wait until the process is gone; false on timeout. */
export async function waitExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
