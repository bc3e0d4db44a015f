/**
 * Output conventions: data on stdout (JSON with --json, text otherwise), logs and errors on stderr,
 * documented exit codes (docs/cli.md; the codes of docs/errors.md).
 */
import { isVcvError, VcvError, exitCodes } from '@vicover/errors';

export function printJson(data: unknown): void {
  process.stdout.write(JSON.stringify(data, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
}

export function printText(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

/** Print an error for people (stderr) and, with --json, for machines (stdout). Returns the exit code. */
export function reportError(e: unknown, json = false): number {
  const err = isVcvError(e) ? e : new VcvError('VCV_ERR_INTERNAL', e instanceof Error ? (e.stack ?? e.message) : String(e));
  const lines = err.message.split('\n');
  process.stderr.write(`vicover: error ${err.code}: ${lines[0]}\n${lines.slice(1).map((l) => `  ${l}\n`).join('')}`);
  if (json) printJson({ error: { code: err.code, message: err.message, ...pick(err.details) } });
  return err.exitCode;
}

function pick(d: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['plugin', 'hook', 'file', 'line', 'column', 'path']) if (d[k] !== undefined) out[k] = d[k];
  return out;
}

export { exitCodes };

export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i === 0 ? 0 : x < 10 ? 2 : 1)} ${units[i]}`;
}
