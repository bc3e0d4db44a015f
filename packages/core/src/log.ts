/**
 * Logs through pino: JSON lines by default (to stderr, so stdout stays for `--json` data), readable
 * text on a TTY. Child loggers carry `plugin` and `vm` bindings, so every line says where it came from.
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import type PinoPretty from 'pino-pretty';

const require = createRequire(import.meta.url);

export type { Logger } from 'pino';

export interface LogOptions {
  level?: LevelWithSilent | string;
  /** auto: pretty when the destination is a TTY. */
  format?: 'auto' | 'json' | 'pretty';
  /** File descriptor to write to (default 2, stderr). */
  fd?: number;
  /** Base bindings, e.g. `{ simulated: true }`. */
  base?: Record<string, unknown>;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const fd = opts.fd ?? 2;
  const isTty = fd === 2 ? process.stderr.isTTY === true : fd === 1 ? process.stdout.isTTY === true : false;
  const usePretty = opts.format === 'pretty' || (opts.format !== 'json' && isTty);
  const options = {
    level: opts.level ?? 'info',
    base: { ...(opts.base ?? {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: { err: pino.stdSerializers.err },
  };
  if (usePretty) {
    // pino-pretty is loaded only for a terminal (it pulls in a dozen modules).
    const pretty = require('pino-pretty') as typeof PinoPretty;
    const stream = pretty({
      destination: fd,
      sync: true,
      colorize: isTty,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      messageFormat: '{if plugin}[{plugin}] {end}{if vm}<{vm}> {end}{msg}',
    });
    return pino(options, stream);
  }
  return pino(options, pino.destination({ fd, sync: true }));
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
