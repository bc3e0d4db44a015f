/**
 * Configuration: found by cosmiconfig (`vicover.config.{json,yaml,yml,js,mjs,cjs}`, `.vicoverrc*`,
 * `package.json#vicover`) or named with `--config FILE`; validated with ajv against the core schema and
 * every plugin's own schema; defaults applied; then frozen. Errors carry file:line:column where the
 * file is JSON or YAML.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Node } from 'yaml';
import { VcvError, isVcvError } from '@vicover/errors';
import { coreSchema, type CoreConfig } from './schema.js';
import { validate, type Problem } from './validate.js';
import { deepFreeze, loadPlugin, type LoadedPlugin, type PluginEntry } from './plugin.js';

export const MODULE_NAME = 'vicover';

export const SEARCH_PLACES = [
  'package.json',
  '.vicoverrc',
  '.vicoverrc.json',
  '.vicoverrc.yaml',
  '.vicoverrc.yml',
  '.vicoverrc.js',
  '.vicoverrc.mjs',
  '.vicoverrc.cjs',
  'vicover.config.json',
  'vicover.config.yaml',
  'vicover.config.yml',
  'vicover.config.js',
  'vicover.config.mjs',
  'vicover.config.cjs',
];

export interface LoadConfigOptions {
  /** Explicit file (`--config`). */
  file?: string;
  /** Where to start searching (default: cwd). */
  cwd?: string;
  /** Don't search: use `inline` (or defaults) only. */
  noSearch?: boolean;
  /** A config object given by code (tests, the demo). Relative plugin paths resolve against `cwd`. */
  inline?: Record<string, unknown>;
  /** Plugins appended after the configured ones (e.g. the CLI's defaults). */
  extraPlugins?: readonly PluginEntry[];
}

export interface ResolvedConfig {
  /** The file the configuration came from, if any. */
  readonly file?: string;
  readonly config: CoreConfig;
  readonly plugins: readonly LoadedPlugin[];
}

interface RawConfig {
  file?: string;
  data: Record<string, unknown>;
  /** Path prefix inside the file (package.json#vicover → ['vicover']). */
  prefix: (string | number)[];
}

async function readRaw(opts: LoadConfigOptions): Promise<RawConfig> {
  if (opts.inline) return { data: structuredClone(opts.inline), prefix: [] };
  // Loaded on demand: a config given inline (the CLI's one-shot commands) never needs the search.
  const { cosmiconfig } = await import('cosmiconfig');
  const explorer = cosmiconfig(MODULE_NAME, { searchPlaces: SEARCH_PLACES, searchStrategy: 'global', cache: false });
  let result: { config: unknown; filepath: string; isEmpty?: boolean } | null;
  try {
    if (opts.file) result = await explorer.load(path.resolve(opts.cwd ?? process.cwd(), opts.file));
    else if (opts.noSearch) result = null;
    else result = await explorer.search(opts.cwd ?? process.cwd());
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { mark?: { line: number; column: number }; linePos?: { line: number; col: number }[] };
    if (err.code === 'ENOENT') {
      throw new VcvError('VCV_ERR_CONFIG_NOT_FOUND', `configuration file ${opts.file} does not exist`, { file: opts.file });
    }
    const file = opts.file ? path.resolve(opts.file) : (err as { filepath?: string }).filepath;
    const pos = err.mark ? `:${err.mark.line + 1}:${err.mark.column + 1}` : '';
    throw new VcvError('VCV_ERR_CONFIG_PARSE', `${file ?? 'configuration'}${pos}: cannot parse: ${err.message.split('\n')[0]}`, { file }, { cause: e });
  }
  if (!result) return { data: {}, prefix: [] };
  const data = result.config ?? {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new VcvError('VCV_ERR_CONFIG_INVALID', `${result.filepath}: the configuration must be an object, got ${Array.isArray(data) ? 'an array' : typeof data}`, { file: result.filepath });
  }
  const prefix = path.basename(result.filepath) === 'package.json' ? [MODULE_NAME] : [];
  return { file: result.filepath, data: structuredClone(data as Record<string, unknown>), prefix };
}

/** A file name as people want to read it: relative when under the cwd, else absolute. */
export function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/** Find `segments` in a JSON/YAML file and return line:column (1-based), or undefined. */
export async function locate(file: string | undefined, segments: readonly (string | number)[], atKey = false): Promise<{ line: number; column: number } | undefined> {
  if (!file || !/\.(json|ya?ml)$|rc$/.test(file)) return undefined;
  // The YAML parser (which also reads JSON) is loaded only to place an error.
  const { LineCounter, parseDocument, isCollection, isNode } = await import('yaml');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, keepSourceTokens: false });
  if (doc.errors.length) return undefined;
  // Walk as deep as the path exists; an unknown key points at its own key node.
  let node: unknown = doc.contents;
  let best: Node | undefined = isNode(node) ? node : undefined;
  for (const seg of segments) {
    if (!isCollection(node)) break;
    const pair = (node.items as unknown[]).find((it, i) => {
      if (typeof seg === 'number') return i === seg;
      const k = (it as { key?: { value?: unknown } }).key;
      return k && k.value === seg;
    });
    if (pair === undefined) break;
    const p = pair as { key?: Node; value?: Node };
    if (typeof seg === 'number' && isNode(pair)) {
      node = pair;
      best = pair as Node;
      continue;
    }
    best = (p.value && isNode(p.value) ? p.value : p.key) ?? best;
    if (typeof seg === 'string' && p.key && isNode(p.key) && !p.value) best = p.key;
    node = p.value;
    // For an unknown key the problem path ends with that key: point at the key itself.
    if (atKey && seg === segments[segments.length - 1] && p.key && isNode(p.key)) best = p.key;
  }
  const offset = best?.range?.[0];
  if (offset === undefined) return undefined;
  const { line, col } = lc.linePos(offset);
  return { line, column: col };
}

async function problemError(file: string | undefined, prefix: (string | number)[], problems: { segments: readonly (string | number)[]; message: string; plugin?: string; atKey?: boolean }[], code: 'VCV_ERR_CONFIG_INVALID' | 'VCV_ERR_PLUGIN_OPTIONS'): Promise<VcvError> {
  const positions = await Promise.all(problems.map((p) => locate(file, [...prefix, ...p.segments], p.atKey)));
  const lines = problems.map((p, i) => {
    const pos = positions[i];
    const where = file ? `${displayPath(file)}${pos ? `:${pos.line}:${pos.column}` : ''}: ` : '';
    return `${where}${p.message}`;
  });
  const first = problems[0];
  const pos = positions[0];
  return new VcvError(code, lines.join('\n'), {
    file,
    line: pos?.line,
    column: pos?.column,
    plugin: first?.plugin,
    problems: problems.map((p) => ({ path: p.segments, message: p.message, plugin: p.plugin })),
  });
}

/**
 * Load, validate and freeze the configuration, and load its plugins (validating each plugin's options
 * against its own schema). Errors are VcvErrors with messages meant for people.
 */
export async function loadConfig(opts: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const raw = await readRaw(opts);
  const problems: Problem[] = validate(coreSchema, raw.data);
  if (problems.length) throw await problemError(raw.file, raw.prefix, problems.map((p) => ({ ...p })), 'VCV_ERR_CONFIG_INVALID');
  const data = raw.data as unknown as CoreConfig & { plugins: PluginEntry[] };
  const fromDir = raw.file ? path.dirname(raw.file) : path.resolve(opts.cwd ?? process.cwd());
  const entries: PluginEntry[] = [...data.plugins, ...(opts.extraPlugins ?? [])];
  const plugins: LoadedPlugin[] = [];
  for (let i = 0; i < entries.length; i++) {
    try {
      plugins.push(await loadPlugin(entries[i]!, i, fromDir, raw.file));
    } catch (e) {
      if (isVcvError(e, 'VCV_ERR_PLUGIN_OPTIONS') && Array.isArray(e.details.problems)) {
        // Re-render with positions inside the file: plugins[i][1].<path>
        const ps = (e.details.problems as { segments: (string | number)[]; message: string; atKey?: boolean }[]).map((p) => ({
          atKey: p.atKey,
          segments: ['plugins', i, 1, ...p.segments],
          message: e.message.split('\n').find((l) => l.endsWith(p.message)) ?? p.message,
          plugin: e.details.plugin as string,
        }));
        throw await problemError(raw.file, raw.prefix, ps, 'VCV_ERR_PLUGIN_OPTIONS');
      }
      if (isVcvError(e) && raw.file && e.details.file === undefined) e.details.file = raw.file;
      if (isVcvError(e) && raw.file && e.code.startsWith('VCV_ERR_PLUGIN')) {
        const pos = await locate(raw.file, [...raw.prefix, 'plugins', i]);
        if (pos) {
          const rel = displayPath(raw.file);
          Object.assign(e.details, pos);
          (e as { message: string }).message = `${rel}:${pos.line}:${pos.column}: ${e.message}`;
        }
      }
      throw e;
    }
  }
  const seen = new Map<string, number>();
  for (const p of plugins) {
    const prev = seen.get(p.plugin.name);
    if (prev !== undefined) {
      throw new VcvError('VCV_ERR_PLUGIN_DUPLICATE', `plugins[${p.index}] "${p.plugin.name}": a plugin with this name is already loaded (plugins[${prev}])`, { plugin: p.plugin.name, file: raw.file, path: `plugins[${p.index}]` });
    }
    seen.set(p.plugin.name, p.index);
  }
  return { file: raw.file, config: deepFreeze(data), plugins };
}
