/**
 * From a configuration to a ready core: load and validate the config, apply its plugins, and fill in
 * the defaults — when the config names no plugins at all, the default set; when no loaded plugin
 * provides a backend, the simulated host (so `vicover daemon` with no config runs on the embedded
 * default, labelled simulated everywhere).
 */
import { createLogger, loadConfig, Vicover, type LoadedPlugin, type PluginEntry, type ResolvedConfig } from '@vicover/core';

/** The plugins a configuration without a `plugins:` list gets. */
export const DEFAULT_PLUGINS: readonly PluginEntry[] = ['linux', 'shared-fs', 'io-priority'];
export const DEFAULT_BACKEND = 'simhost';

export interface CreateCoreOptions {
  configFile?: string;
  cwd?: string;
  /** A config object instead of a file (demo, tests). */
  inline?: Record<string, unknown>;
  logLevel?: string;
  logFormat?: string;
  /** Don't add the default backend when none is configured. */
  noDefaultBackend?: boolean;
  /** Extra plugins appended (e.g. the CLI's offline dump adds linux). */
  extraPlugins?: readonly PluginEntry[];
}

export interface CreatedCore {
  core: Vicover;
  file?: string;
  resolved: ResolvedConfig;
}

export async function createCore(o: CreateCoreOptions = {}): Promise<CreatedCore> {
  let resolved = await loadConfig({ file: o.configFile, cwd: o.cwd, inline: o.inline, extraPlugins: o.extraPlugins });
  const rawPlugins = resolved.config.plugins;
  if (rawPlugins.length === 0 && !o.extraPlugins?.length) {
    resolved = await loadConfig({ file: o.configFile, cwd: o.cwd, inline: o.inline, extraPlugins: DEFAULT_PLUGINS });
  }
  const logger = createLogger({
    level: o.logLevel ?? resolved.config.log.level,
    format: (o.logFormat as 'auto' | 'json' | 'pretty' | undefined) ?? resolved.config.log.format,
  });
  const core = new Vicover({ config: resolved.config, logger });
  for (const p of resolved.plugins) await core.use(p);
  if (!o.noDefaultBackend && core.backendNames().length === 0) {
    const extra = await loadConfig({ inline: {}, extraPlugins: [DEFAULT_BACKEND] });
    for (const p of extra.plugins as LoadedPlugin[]) await core.use(p);
    core.log.info({ backend: DEFAULT_BACKEND }, 'no backend configured: using the simulated host (SIMULATED)');
  }
  return { core, file: resolved.file, resolved };
}
