/**
 * Logs through pino: JSON lines by default (to stderr, so stdout stays for `--json` data), readable
 * text on a TTY. Child loggers carry `plugin` and `vm` bindings, so every line says where it came from.
 */
import { createRequire } from 'node:module';
import type { Logger, LevelWithSilent } from 'pino';
import type Pino from 'pino';
import type PinoPretty from 'pino-pretty';

const require = createRequire(import.meta.url);

/** pino's default levels; a call below the logger's level is dropped before pino is even loaded. */
const LEVEL_VALUES: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
const noop = () => undefined;

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
  return lazyLogger(() => makeLogger(opts), String(opts.level ?? 'info'));
}

function makeLogger(opts: LogOptions): Logger {
  const { pino } = require('pino') as typeof Pino;
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
  return lazyLogger(() => (require('pino') as typeof Pino).pino({ level: 'silent' }), 'silent');
}

/**
 * A pino logger that loads pino only when it is first needed: pino and its dependencies are ~40
 * modules (25–35 ms of start-up), and a `vicover dump` at its default level (warn) usually logs
 * nothing. Calls of a level method below the current level return at once; `isLevelEnabled`,
 * `level` and `child(bindings)` are answered without pino too. A child follows its parent's level,
 * as pino's children do until they are given their own. Anything else — an enabled level, a child
 * with options, a setter, any other property — creates the real logger (a child through its
 * parent's) and goes to it from then on.
 */
export function lazyLogger(make: () => Logger, level: string | (() => string)): Logger {
  const levelOf = typeof level === 'string' ? () => level : level;
  let real: Logger | undefined;
  const get = (): Logger => (real ??= make());
  // Bound methods of the real logger, each bound once (pino swaps a level's method when the level changes).
  const bound = new Map<PropertyKey, { fn: unknown; bound: unknown }>();
  const bind = (target: Logger, prop: PropertyKey): unknown => {
    const v = (target as unknown as Record<PropertyKey, unknown>)[prop];
    if (typeof v !== 'function') return v;
    const b = bound.get(prop);
    if (b?.fn === v) return b.bound;
    const f = v.bind(target);
    bound.set(prop, { fn: v, bound: f });
    return f;
  };
  const view: Logger = new Proxy({} as Logger, {
    get(_t, prop) {
      if (real) return bind(real, prop);
      const current = levelOf();
      const threshold = LEVEL_VALUES[current];
      if (threshold === undefined) return bind(get(), prop); // a custom level: only pino knows it
      if (typeof prop === 'string' && prop in LEVEL_VALUES && prop !== 'silent') return LEVEL_VALUES[prop]! < threshold ? noop : bind(get(), prop);
      if (prop === 'isLevelEnabled') return (l: string) => (l in LEVEL_VALUES ? LEVEL_VALUES[l]! >= threshold : get().isLevelEnabled(l));
      if (prop === 'level') return current;
      if (prop === 'then') return undefined; // not a thenable: awaiting the logger must not load pino
      if (prop === 'child') {
        return (bindings: Record<string, unknown>, options?: object) =>
          options !== undefined ? get().child(bindings, options) : lazyLogger(() => get().child(bindings), () => view.level);
      }
      return bind(get(), prop);
    },
    set(_t, prop, value) {
      (get() as unknown as Record<PropertyKey, unknown>)[prop] = value;
      return true;
    },
    has(_t, prop) {
      return prop in get();
    },
  });
  return view;
}
