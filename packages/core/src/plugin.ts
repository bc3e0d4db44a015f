/**
 * The plugin contract and the loader. A plugin is an object (or a class / factory producing one) with a
 * `name`, an optional `coreVersion` semver range, an optional JSON Schema for its options, and
 * `apply(core, options)`, where it taps `core.hooks.<hook>` as in webpack.
 *
 * Config entries follow the babel convention: `'name-or-path'` or `['name-or-path', options]`.
 * Names: `@vicover/plugin-x` (ours), `vicover-plugin-x` (third party), a short `x` (tries both), or a
 * path (relative to the config file).
 */
import { createRequire } from 'node:module';
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type Semver from 'semver';
import { VcvError } from '@vicover/errors';
import type { Vicover } from './core.js';
import { checkSchema, validate } from './validate.js';
import { CORE_VERSION } from './version.js';

export interface PluginMeta {
  readonly name: string;
  /** semver range of @vicover/core versions this plugin supports. */
  readonly coreVersion?: string;
  /** JSON Schema for the plugin's options (draft-07; `default`s are applied). */
  readonly optionsSchema?: object;
  readonly description?: string;
}

export interface VicoverPlugin<Options = any> extends PluginMeta {
  apply(core: Vicover, options: Options): void | Promise<void>;
}

export type PluginClass<Options = any> = (new (options: Options) => VicoverPlugin<Options>) & Partial<PluginMeta>;
export type PluginFactory<Options = any> = ((options: Options) => VicoverPlugin<Options>) & Partial<PluginMeta>;
export type PluginExport = VicoverPlugin | PluginClass | PluginFactory;

/** One entry of the config's `plugins:` list, or a plugin given directly by code. */
export type PluginEntry = string | readonly [string, Record<string, unknown>?] | VicoverPlugin | readonly [VicoverPlugin, Record<string, unknown>?];

export interface LoadedPlugin {
  readonly plugin: VicoverPlugin;
  readonly options: Readonly<Record<string, unknown>>;
  /** Where it came from: resolved file, or `inline`. */
  readonly source: string;
  /** The config entry as written. */
  readonly request: string;
  readonly index: number;
}

/** Define a plugin with type-checked options (identity at run time). */
export function definePlugin<O = Record<string, unknown>>(p: VicoverPlugin<O>): VicoverPlugin<O> {
  return p;
}

const PATHLIKE = /^(\.{1,2}[\\/]|[\\/]|file:|[A-Za-z]:[\\/])/;

export function candidateNames(request: string): string[] {
  if (PATHLIKE.test(request)) return [request];
  if (request.startsWith('@') || request.startsWith('vicover-plugin-')) return [request];
  return [`@vicover/plugin-${request}`, `vicover-plugin-${request}`];
}

/** Resolve a plugin request to a file. Looks next to the config first, then next to the core. */
export function resolvePlugin(request: string, fromDir: string, ctx: { index: number; file?: string }): string {
  if (PATHLIKE.test(request)) {
    const p = request.startsWith('file:') ? fileURLToPath(request) : path.resolve(fromDir, request);
    if (!existsSync(p)) {
      throw new VcvError('VCV_ERR_PLUGIN_NOT_FOUND', `plugins[${ctx.index}] "${request}": no file or directory at ${p}`, {
        plugin: request,
        path: `plugins[${ctx.index}]`,
        file: ctx.file,
      });
    }
    if (statSync(p).isDirectory()) {
      try {
        return createRequire(path.join(p, 'noop.js')).resolve(p);
      } catch {
        throw new VcvError('VCV_ERR_PLUGIN_NOT_FOUND', `plugins[${ctx.index}] "${request}": directory ${p} has no package.json main/exports or index.js`, {
          plugin: request,
          path: `plugins[${ctx.index}]`,
          file: ctx.file,
        });
      }
    }
    return p;
  }
  const bases = [path.join(fromDir, 'noop.js'), fileURLToPath(import.meta.url), path.join(process.cwd(), 'noop.js')];
  const tried: string[] = [];
  for (const name of candidateNames(request)) {
    for (const base of bases) {
      try {
        return createRequire(base).resolve(name);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw e;
      }
    }
    tried.push(name);
  }
  throw new VcvError(
    'VCV_ERR_PLUGIN_NOT_FOUND',
    `plugins[${ctx.index}] "${request}": plugin not found (tried ${tried.join(', ')} from ${fromDir}; install it with npm or give a path)`,
    { plugin: request, path: `plugins[${ctx.index}]`, file: ctx.file },
  );
}

function isPluginObject(x: unknown): x is VicoverPlugin {
  return !!x && typeof x === 'object' && typeof (x as VicoverPlugin).apply === 'function' && typeof (x as VicoverPlugin).name === 'string';
}

function isClass(fn: Function): boolean {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn)) || typeof fn.prototype?.apply === 'function';
}

/** Metadata readable before instantiation: static properties of a class/factory, or the object itself. */
function metaOf(exp: PluginExport): Partial<PluginMeta> {
  if (typeof exp === 'function') {
    const f = exp as Function & Partial<PluginMeta> & { pluginName?: string };
    return { name: f.pluginName ?? undefined, coreVersion: f.coreVersion, optionsSchema: f.optionsSchema };
  }
  return exp;
}

/** Instantiate and validate one plugin export with its options (options are validated in place). */
export function instantiate(exp: unknown, rawOptions: Record<string, unknown> | undefined, ctx: { request: string; index: number; file?: string; source: string }): LoadedPlugin {
  const where = { path: `plugins[${ctx.index}]`, file: ctx.file };
  const label = (name?: string) => `plugins[${ctx.index}] "${name ?? ctx.request}"`;
  if (!isPluginObject(exp) && typeof exp !== 'function') {
    throw new VcvError('VCV_ERR_PLUGIN_INVALID', `${label()}: the module's default export is ${exp === null ? 'null' : typeof exp}, not a plugin (expected an object with name and apply(), a class, or a factory)`, { plugin: ctx.request, ...where });
  }
  const meta = metaOf(exp as PluginExport);
  const options = structuredClone(rawOptions ?? {});
  if (meta.coreVersion !== undefined) checkRange(meta.coreVersion, label(meta.name), meta.name ?? ctx.request, where);
  if (meta.optionsSchema) checkOptions(meta.optionsSchema, options, label(meta.name), meta.name ?? ctx.request, where);
  let plugin: unknown;
  try {
    if (typeof exp === 'function') plugin = isClass(exp) ? new (exp as PluginClass)(options) : (exp as PluginFactory)(options);
    else plugin = exp;
  } catch (e) {
    throw new VcvError('VCV_ERR_PLUGIN_INVALID', `${label(meta.name)}: creating the plugin threw: ${(e as Error)?.message ?? e}`, { plugin: meta.name ?? ctx.request, ...where }, { cause: e });
  }
  if (!isPluginObject(plugin)) {
    throw new VcvError('VCV_ERR_PLUGIN_INVALID', `${label(meta.name)}: the plugin has no ${typeof (plugin as VicoverPlugin)?.name !== 'string' ? 'name' : 'apply() method'} (expected an object with name and apply())`, { plugin: meta.name ?? ctx.request, ...where });
  }
  // Metadata on the instance (object plugins, or classes that set it in the constructor).
  if (plugin.coreVersion !== undefined && plugin.coreVersion !== meta.coreVersion) checkRange(plugin.coreVersion, label(plugin.name), plugin.name, where);
  if (plugin.optionsSchema && plugin.optionsSchema !== meta.optionsSchema) checkOptions(plugin.optionsSchema, options, label(plugin.name), plugin.name, where);
  return { plugin, options: deepFreeze(options), source: ctx.source, request: ctx.request, index: ctx.index };
}

const NUM = '(0|[1-9]\\d{0,14})';
const PLAIN_VERSION = new RegExp(`^${NUM}\\.${NUM}\\.${NUM}$`);
const CARET_RANGE = new RegExp(`^\\^${NUM}\\.${NUM}\\.${NUM}$`);

/**
 * `^X.Y.Z` against a plain `X.Y.Z` version, decided as semver decides it; null for any other form
 * of either (semver then decides). Every plugin in this repository declares such a range, and semver
 * is ~20 modules (15–35 ms of a `vicover dump`'s start).
 */
export function caretSatisfies(version: string, range: string): boolean | null {
  const v = PLAIN_VERSION.exec(version);
  const r = CARET_RANGE.exec(range.trim());
  if (!v || !r) return null;
  const [a, b, c] = v.slice(1).map(Number) as [number, number, number];
  const [x, y, z] = r.slice(1).map(Number) as [number, number, number];
  if (a !== x) return false;
  if (x > 0) return b > y || (b === y && c >= z); // ^1.2.3: >=1.2.3 <2.0.0
  if (y > 0) return b === y && c >= z; // ^0.2.3: >=0.2.3 <0.3.0
  return b === 0 && c === z; // ^0.0.3: =0.0.3
}

function checkRange(range: string, label: string, plugin: string, where: { path: string; file?: string }) {
  if (!(caretSatisfies(CORE_VERSION, range) ?? semverSatisfies(range, label, plugin, where))) {
    throw new VcvError('VCV_ERR_PLUGIN_VERSION', `${label}: supports @vicover/core ${range}, but this is ${CORE_VERSION}`, { plugin, ...where, coreVersion: CORE_VERSION, range });
  }
}

/** semver's answer for any range caretSatisfies leaves open; throws for a range that is not one. */
function semverSatisfies(range: string, label: string, plugin: string, where: { path: string; file?: string }): boolean {
  // Only the two functions needed (the semver index loads a dozen modules).
  const req = createRequire(import.meta.url);
  const semver = { validRange: req('semver/ranges/valid') as typeof Semver.validRange, satisfies: req('semver/functions/satisfies') as typeof Semver.satisfies };
  if (!semver.validRange(range)) {
    throw new VcvError('VCV_ERR_PLUGIN_INVALID', `${label}: coreVersion "${range}" is not a semver range`, { plugin, ...where });
  }
  return semver.satisfies(CORE_VERSION, range, { includePrerelease: true });
}

function checkOptions(schema: object, options: Record<string, unknown>, label: string, plugin: string, where: { path: string; file?: string }) {
  const bad = checkSchema(schema);
  if (bad) throw new VcvError('VCV_ERR_PLUGIN_INVALID', `${label}: its optionsSchema is not a valid JSON Schema: ${bad}`, { plugin, ...where });
  const problems = validate(schema, options);
  if (problems.length) {
    throw new VcvError('VCV_ERR_PLUGIN_OPTIONS', problems.map((p) => `${label}: ${p.message}`).join('\n'), {
      plugin,
      ...where,
      problems: problems.map((p) => ({ path: `${where.path}[1]${p.path ? '.' + p.path : ''}`, segments: p.segments, message: p.message, atKey: p.atKey })),
    });
  }
}

/** Load one config entry: resolve, import, instantiate, validate. */
export async function loadPlugin(entry: PluginEntry, index: number, fromDir: string, file?: string): Promise<LoadedPlugin> {
  const [target, options] = (Array.isArray(entry) ? entry : [entry, undefined]) as [string | VicoverPlugin, Record<string, unknown> | undefined];
  if (typeof target !== 'string') {
    return instantiate(target, options, { request: (target as VicoverPlugin)?.name ?? 'inline', index, file, source: 'inline' });
  }
  const resolved = resolvePlugin(target, fromDir, { index, file });
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  } catch (e) {
    throw new VcvError('VCV_ERR_PLUGIN_LOAD', `plugins[${index}] "${target}": loading ${resolved} failed: ${(e as Error)?.message ?? e}`, { plugin: target, path: `plugins[${index}]`, file }, { cause: e });
  }
  // ESM default export; a CommonJS module.exports arrives as `default` too (possibly with its own `default`).
  let exp: unknown = mod.default ?? mod.plugin ?? mod;
  if (exp && typeof exp === 'object' && !isPluginObject(exp) && 'default' in (exp as object)) exp = (exp as { default: unknown }).default;
  return instantiate(exp, options, { request: target, index, file, source: resolved });
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
