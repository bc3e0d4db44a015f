/**
 * Schema validation with messages for people: one sentence per problem naming the component (core or
 * plugin), the exact path, what was expected (with the schema's description), what was found, and a
 * "did you mean" for misspelled keys. Positions (file:line:column) come from a `locate` callback.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { ErrorObject, Options as AjvOptions, ValidateFunction } from 'ajv';

/** The part of ajv used here. */
interface AjvLike {
  compile(schema: object): ValidateFunction;
}

/** The options every validator is compiled with, at run time and by `scripts/precompile-schemas.mjs`. */
export const AJV_OPTIONS: Readonly<AjvOptions> = Object.freeze({ allErrors: true, useDefaults: true, strict: false, allowUnionTypes: true });

export interface Problem {
  /** Path in our notation: `dump.chunkMiB`, `plugins[2]`, `vms[0].qmp`. */
  readonly path: string;
  /** The same path as segments (for locating it in a file). */
  readonly segments: readonly (string | number)[];
  readonly message: string;
  /** The problem is the key itself (unknown key), not its value. */
  readonly atKey?: boolean;
}

const req = createRequire(import.meta.url);
let ajv: AjvLike | undefined;
let ajvVersion: string | undefined;
const cache = new WeakMap<object, ValidateFunction>();

/** ajv, loaded on first need: the schemas of the packages in this repository come precompiled. */
function runtimeAjv(): AjvLike {
  if (!ajv) {
    // ajv is CommonJS with `exports.default = Ajv`.
    const mod = req('ajv') as { default?: new (o: AjvOptions) => AjvLike };
    const Ajv = (mod.default ?? mod) as new (o: AjvOptions) => AjvLike;
    ajv = new Ajv({ ...AJV_OPTIONS });
  }
  return ajv;
}

/**
 * The name of a schema's precompiled validator: a hash of the schema, the ajv version and the
 * options, so that a changed schema (or ajv) never meets a stale validator — it is compiled at run
 * time instead.
 */
export function schemaKey(schema: object): string {
  ajvVersion ??= (req('ajv/package.json') as { version: string }).version;
  return createHash('sha256')
    .update(`${ajvVersion}\0${JSON.stringify(AJV_OPTIONS)}\0${JSON.stringify(schema)}`)
    .digest('hex')
    .slice(0, 32);
}

/** Where `npm run build` leaves the precompiled validators (ajv standalone code, CommonJS). */
export const PRECOMPILED_DIR = 'precompiled';

function precompiled(schema: object): ValidateFunction | undefined {
  if (process.env.VICOVER_PRECOMPILED === '0') return undefined;
  try {
    const m = req(`./${PRECOMPILED_DIR}/${schemaKey(schema)}.cjs`) as ValidateFunction & { default?: ValidateFunction };
    return typeof m.default === 'function' ? m.default : m;
  } catch {
    return undefined; // not built, or built for another schema: compile it now
  }
}

function compile(schema: object): ValidateFunction {
  const known = cache.get(schema);
  if (known) return known;
  const v = precompiled(schema) ?? runtimeAjv().compile(schema);
  cache.set(schema, v);
  return v;
}

/** Check a schema compiles (plugin authors get an error at load time, not at first use). */
export function checkSchema(schema: object): string | null {
  try {
    compile(schema);
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** Validate `data` in place (defaults are filled in). Returns the problems, empty when valid. */
export function validate(schema: object, data: unknown): Problem[] {
  const v = compile(schema);
  if (v(data)) return [];
  return explain(v.errors ?? [], schema, data);
}

export function formatPath(segments: readonly (string | number)[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

function pointerSegments(pointer: string, data: unknown): (string | number)[] {
  if (!pointer) return [];
  const segs: (string | number)[] = [];
  let cur: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur) && /^\d+$/.test(key)) {
      segs.push(Number(key));
      cur = cur[Number(key)];
    } else {
      segs.push(key);
      cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[key] : undefined;
    }
  }
  return segs;
}

function schemaAt(schema: unknown, schemaPath: string): Record<string, unknown> | undefined {
  // schemaPath like "#/properties/dump/properties/chunkMiB/type" → the subschema holding the keyword
  const parts = schemaPath.replace(/^#\/?/, '').split('/').slice(0, -1);
  let cur: unknown = schema;
  for (const p of parts) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur && typeof cur === 'object' ? (cur as Record<string, unknown>) : undefined;
}

function valueAt(data: unknown, segs: readonly (string | number)[]): unknown {
  let cur = data;
  for (const s of segs) {
    if (cur == null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[s];
  }
  return cur;
}

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 37) + '...' : v)}`;
  return `${typeof v} ${String(v)}`;
}

/** Levenshtein distance, small strings only. */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const row = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= n; j++) {
      const tmp = row[j]!;
      const cost = a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + cost);
      prev = tmp;
    }
  }
  return row[n]!;
}

export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  const limit = Math.max(2, Math.floor(word.length / 3));
  return best !== undefined && bestD <= limit ? best : undefined;
}

function expectation(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'type':
      return `must be ${String(p.type).replace(',', ' or ')}`;
    case 'enum':
      return `must be one of ${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case 'minimum':
      return `must be ≥ ${p.limit}`;
    case 'maximum':
      return `must be ≤ ${p.limit}`;
    case 'exclusiveMinimum':
      return `must be > ${p.limit}`;
    case 'exclusiveMaximum':
      return `must be < ${p.limit}`;
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `must be at least ${p.limit} characters`;
    case 'maxLength':
      return `must be at most ${p.limit} characters`;
    case 'minItems':
      return `must have at least ${p.limit} item(s)`;
    case 'maxItems':
      return `must have at most ${p.limit} item(s)`;
    case 'pattern':
      return `must match ${String(p.pattern)}`;
    case 'format':
      return `must be a valid ${String(p.format)}`;
    case 'multipleOf':
      return `must be a multiple of ${p.multipleOf}`;
    default:
      return e.message ?? `fails ${e.keyword}`;
  }
}

function explain(errors: ErrorObject[], schema: object, data: unknown): Problem[] {
  const out: Problem[] = [];
  const seen = new Set<string>();
  // anyOf/oneOf produce one error per branch plus a summary; keep the summary (one sentence per problem).
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf').map((e) => e.instancePath));
  for (const e of errors) {
    if (e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && [...anyOfPaths].some((p) => e.instancePath.startsWith(p) && e.schemaPath.includes('/anyOf/'))) continue;
    let segs = pointerSegments(e.instancePath, data);
    let message: string;
    let atKey = false;
    const p = e.params as Record<string, unknown>;
    if (e.keyword === 'additionalProperties') {
      const key = String(p.additionalProperty);
      const parent = schemaAt(schema, e.schemaPath);
      const known = Object.keys((parent?.properties as object) ?? {});
      segs = [...segs, key];
      atKey = true;
      const guess = didYouMean(key, known);
      message = `${formatPath(segs)} is not a known key` + (guess ? ` — did you mean "${guess}"?` : known.length ? ` (known keys: ${known.join(', ')})` : '');
    } else if (e.keyword === 'required') {
      const key = String(p.missingProperty);
      const parent = schemaAt(schema, e.schemaPath);
      const desc = (parent?.properties as Record<string, { description?: string }> | undefined)?.[key]?.description;
      segs = [...segs, key];
      message = `${formatPath(segs)} is required` + (desc ? ` (${desc})` : '');
    } else if (e.keyword === 'anyOf' || e.keyword === 'oneOf') {
      const sub = schemaAt(schema, e.schemaPath + '/x');
      const desc = typeof sub?.description === 'string' ? ` (${sub.description})` : '';
      message = `${formatPath(segs) || 'the configuration'} is ${describeValue(valueAt(data, segs))}, which is not allowed here${desc}`;
    } else {
      const sub = schemaAt(schema, e.schemaPath);
      const desc = typeof sub?.description === 'string' ? ` (${sub.description})` : '';
      message = `${formatPath(segs) || 'the configuration'} ${expectation(e)}, got ${describeValue(valueAt(data, segs))}${desc}`;
    }
    const key = formatPath(segs) + '|' + message;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path: formatPath(segs), segments: segs, message, atKey });
  }
  return out;
}
