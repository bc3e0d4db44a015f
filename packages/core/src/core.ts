/**
 * The core object plugins receive in `apply(core)`: the hooks, provider registries (backends), and
 * per-plugin loggers. It owns the lifecycle and nothing else — it knows no hypervisor and no guest OS.
 */
import { VcvError, isVcvError } from '@vicover/errors';
import { createHooks, HOOK_NAMES, type HookName, type Hooks } from './hooks.js';
import type { Backend } from './contracts.js';
import type { CoreConfig } from './schema.js';
import type { LoadedPlugin, VicoverPlugin } from './plugin.js';
import { createLogger, type Logger } from './log.js';
import { CORE_VERSION } from './version.js';
import { validate } from './validate.js';
import { coreSchema } from './schema.js';
import { deepFreeze } from './plugin.js';

interface TapLike {
  name: string;
  type: 'sync' | 'async' | 'promise';
  fn: Function;
  stage?: number;
  plugin?: string;
}

export interface PluginInfo {
  readonly name: string;
  readonly source: string;
  readonly description?: string;
  readonly coreVersion?: string;
  readonly hooks: readonly HookName[];
  readonly provides: readonly string[];
  readonly options: Readonly<Record<string, unknown>>;
}

export interface VicoverOptions {
  config?: CoreConfig;
  logger?: Logger;
}

/** Wrap an error thrown by a tap so it names the plugin and the hook (keeping a VcvError's code). */
export function hookError(e: unknown, plugin: string, hook: string): VcvError {
  if (isVcvError(e) && e.details.hook === hook && e.details.plugin === plugin) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const code = isVcvError(e) ? e.code : 'VCV_ERR_HOOK_FAILED';
  const details = isVcvError(e) ? { ...e.details, plugin, hook } : { plugin, hook };
  return new VcvError(code, `plugin "${plugin}" failed in hook ${hook}: ${msg}`, details, { cause: e });
}

export class Vicover {
  readonly hooks: Hooks = createHooks();
  readonly version = CORE_VERSION;
  readonly config: CoreConfig;
  readonly log: Logger;
  private readonly backends = new Map<string, { backend: Backend; plugin: string }>();
  private readonly pluginInfo = new Map<string, { loaded: LoadedPlugin | null; hooks: Set<HookName>; provides: Set<string> }>();
  private applying: string | null = null;

  constructor(opts: VicoverOptions = {}) {
    this.config = opts.config ?? Vicover.defaultConfig();
    this.log = opts.logger ?? createLogger({ level: this.config.log.level, format: this.config.log.format });
    for (const name of HOOK_NAMES) this.instrument(name);
  }

  /** The configuration with every default applied (no file, no plugins). */
  static defaultConfig(overrides: Record<string, unknown> = {}): CoreConfig {
    const data = structuredClone(overrides);
    const problems = validate(coreSchema, data);
    if (problems.length) throw new VcvError('VCV_ERR_CONFIG_INVALID', problems.map((p) => p.message).join('\n'));
    return deepFreeze(data) as unknown as CoreConfig;
  }

  /** Create a core and apply the given (already loaded and validated) plugins in order. */
  static async create(opts: VicoverOptions & { plugins?: readonly LoadedPlugin[] } = {}): Promise<Vicover> {
    const core = new Vicover(opts);
    for (const p of opts.plugins ?? []) await core.use(p);
    return core;
  }

  /** Apply one plugin. Taps it registers are attributed to it (errors, `vicover plugins`). */
  async use(loaded: LoadedPlugin | VicoverPlugin, options: Record<string, unknown> = {}): Promise<void> {
    const lp: LoadedPlugin =
      'plugin' in loaded ? loaded : { plugin: loaded, options: Object.freeze({ ...options }), source: 'inline', request: loaded.name, index: -1 };
    const name = lp.plugin.name;
    if (this.pluginInfo.has(name)) {
      throw new VcvError('VCV_ERR_PLUGIN_DUPLICATE', `plugin "${name}" is already applied`, { plugin: name });
    }
    this.pluginInfo.set(name, { loaded: lp, hooks: new Set(), provides: new Set() });
    this.applying = name;
    try {
      await lp.plugin.apply(this, lp.options);
    } catch (e) {
      if (isVcvError(e) && e.details.plugin === name) throw e;
      throw new VcvError('VCV_ERR_PLUGIN_APPLY', `plugin "${name}": apply() threw: ${(e as Error)?.message ?? e}`, { plugin: name, ...(isVcvError(e) ? { cause: e.code } : {}) }, { cause: e });
    } finally {
      this.applying = null;
    }
    this.log.debug({ plugin: name, source: lp.source }, 'plugin applied');
  }

  /** A child logger for a plugin (and optionally a VM). */
  logger(plugin: string, bindings: Record<string, unknown> = {}): Logger {
    return this.log.child({ plugin, ...bindings });
  }

  // ── providers ───────────────────────────────────────────────────────────────
  /** Called by backend plugins in apply(). */
  registerBackend(backend: Backend): void {
    const plugin = this.applying ?? backend.name;
    const prev = this.backends.get(backend.name);
    if (prev) {
      throw new VcvError('VCV_ERR_PROVIDER_CONFLICT', `backend "${backend.name}" registered by plugin "${plugin}" is already registered by plugin "${prev.plugin}"`, { plugin });
    }
    this.backends.set(backend.name, { backend, plugin });
    this.pluginInfo.get(plugin)?.provides.add(`backend:${backend.name}`);
  }

  backendNames(): string[] {
    return [...this.backends.keys()];
  }

  /** The backend to use: the configured one, or the only one loaded. */
  backend(name = this.config.backend): Backend {
    if (name) {
      const b = this.backends.get(name);
      if (!b) {
        throw new VcvError('VCV_ERR_NO_BACKEND', `backend "${name}" is not loaded (loaded: ${this.backendNames().join(', ') || 'none'}); add its plugin to plugins:`, { backend: name });
      }
      return b.backend;
    }
    if (this.backends.size === 1) return [...this.backends.values()][0]!.backend;
    if (this.backends.size === 0) throw new VcvError('VCV_ERR_NO_BACKEND', 'no backend plugin is loaded; add one to plugins: (docs/plugins.md lists the backends)');
    throw new VcvError('VCV_ERR_NO_BACKEND', `several backends are loaded (${this.backendNames().join(', ')}); choose one with backend:`);
  }

  /** Loaded plugins with the hooks each taps and what each provides. */
  plugins(): PluginInfo[] {
    return [...this.pluginInfo.entries()].map(([name, info]) => ({
      name,
      source: info.loaded?.source ?? 'inline',
      description: info.loaded?.plugin.description,
      coreVersion: info.loaded?.plugin.coreVersion,
      hooks: HOOK_NAMES.filter((h) => info.hooks.has(h)),
      provides: [...info.provides],
      options: info.loaded?.options ?? {},
    }));
  }

  /** Which plugin owns a tap (taps made during apply() belong to the plugin being applied). */
  private instrument(hookName: HookName): void {
    const hook = this.hooks[hookName] as unknown as { intercept(i: object): void };
    hook.intercept({
      name: 'vicover-attribution',
      register: (tap: TapLike): TapLike => {
        const plugin = this.applying ?? tap.name;
        this.pluginInfo.get(plugin)?.hooks.add(hookName);
        const fn = tap.fn;
        let wrapped: Function;
        if (tap.type === 'promise') {
          wrapped = function (this: unknown, ...args: unknown[]) {
            try {
              return Promise.resolve(fn.apply(this, args)).catch((e: unknown) => {
                throw hookError(e, plugin, hookName);
              });
            } catch (e) {
              return Promise.reject(hookError(e, plugin, hookName));
            }
          };
        } else if (tap.type === 'async') {
          wrapped = function (this: unknown, ...args: unknown[]) {
            const cb = args.pop() as (err?: unknown, res?: unknown) => void;
            try {
              fn.apply(this, [...args, (err: unknown, res: unknown) => (err ? cb(hookError(err, plugin, hookName)) : cb(null, res))]);
            } catch (e) {
              cb(hookError(e, plugin, hookName));
            }
          };
        } else {
          wrapped = function (this: unknown, ...args: unknown[]) {
            try {
              return fn.apply(this, args);
            } catch (e) {
              throw hookError(e, plugin, hookName);
            }
          };
        }
        return { ...tap, fn: wrapped, plugin };
      },
    });
  }
}
