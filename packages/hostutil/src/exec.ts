/**
 * External commands (`fallocate`, `xl`, `make`, …) through execa: always with a timeout, a kill
 * signal and an optional cancel signal; failures become coded errors carrying the command's short
 * stderr. Long-lived children that need custom stdio (FIFOs) are spawned by their owners directly.
 */
import { execa, ExecaError } from 'execa';
import { VcvError } from '@vicover/errors';

export interface RunOptions {
  /** Kill the command (SIGKILL) after this many ms. Default 30 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Largest stdout/stderr kept, bytes. Default 16 MiB. */
  readonly maxBuffer?: number;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** One line of at most `max` characters (white space folded): for error messages. */
export function shortText(s: string, max = 400): string {
  const t = s.trim().replace(/\s+/g, ' ');
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

export async function run(cmd: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const line = [cmd, ...args].join(' ');
  try {
    const r = await execa(cmd, args, {
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      forceKillAfterDelay: 1000,
      ...(o.signal ? { cancelSignal: o.signal } : {}),
      maxBuffer: o.maxBuffer ?? 16 << 20,
      stripFinalNewline: false,
      stdin: 'ignore',
    });
    return { stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    if (!(err instanceof ExecaError)) throw err;
    if (err.code === 'ENOENT') {
      throw new VcvError('VCV_ERR_COMMAND_NOT_FOUND', `${cmd} is not installed (or not on PATH)`, { command: cmd }, { cause: err });
    }
    if (err.isCanceled) throw new VcvError('VCV_ERR_ABORTED', `${line}: cancelled`, { command: cmd }, { cause: err });
    if (err.timedOut) throw new VcvError('VCV_ERR_TIMEOUT', `${line}: no result within ${timeoutMs} ms (killed)`, { command: cmd, timeoutMs }, { cause: err });
    const why = shortText(String(err.stderr ?? '')) || shortText(String(err.stdout ?? '')) || err.shortMessage;
    throw new VcvError('VCV_ERR_COMMAND_FAILED', `${line} failed (exit ${err.exitCode ?? err.signal}): ${why}`, { command: cmd, exit: err.exitCode }, { cause: err });
  }
}
