/**
 * The `linux` plugin: x86-64 Linux guest introspection wired into the crash lifecycle.
 *
 * - onCrash (stage TRIAGE): find VMCOREINFO (image note → configured file → RAM scan, each checked
 *   against the page tables), put it in the dump's notes, set utsname/phys_base for the dump header,
 *   read the printk ring buffer and record the panic line and the last log lines.
 * - selectPages (stage FILTER): classify every RAM page from the struct page array (makedumpfile's
 *   rules, see classify.ts) at the session's dump level and clear the excluded pages.
 *
 * Fallback rule: whenever introspection fails or gives nonsense — no VMCOREINFO, broken page tables,
 * a section map pointing elsewhere, anomalies in struct pages, an absurd fraction of free pages — the
 * page set is left as it came (all RAM) and `pages.fallback` says why (error code + reason). The tap
 * never throws, never leaves the set half narrowed, and never hangs (every loop is bounded).
 */
import { STAGE, type CrashSession, type PageSet, type Vicover, type VicoverPlugin } from '@vicover/core';
import { VcvError, isVcvError } from '@vicover/errors';
import { applyExclusions, nativeDecodeAvailable, warmUpClassifier, type ClassifyResult, type FreeRule } from './classify.js';
import { pageLayoutFromVmcoreinfo } from './page-layout.js';
import { LINUX_6_1_LAYOUT } from './synth/kernel.js';
import { Vmcoreinfo, formatVmcoreinfo } from './vmcoreinfo.js';
import { LinuxKernel } from './kernel.js';
import { findPanicLine, lastLines } from './printk.js';

export const PLUGIN_NAME = 'linux';

export interface LinuxPluginOptions {
  /** A file holding the guest's VMCOREINFO text (used when the image carries no VMCOREINFO note). */
  readonly vmcoreinfoFile?: string;
  /** Scan guest RAM for VMCOREINFO when neither the image nor a file gives it. */
  readonly scan: boolean;
  /** Cap on guest RAM scanned for VMCOREINFO, MiB. */
  readonly maxScanMiB: number;
  /** Free-page rule: `buddy` (makedumpfile's) or the research prototype's `refcount-zero`. */
  readonly freeRule: FreeRule;
  /** Kernel log lines kept in the triage record. */
  readonly logLines: number;
  /** Read the kernel log at onCrash. */
  readonly triage: boolean;
  /** Give up (full dump) when more than this fraction of RAM pages looks free. */
  readonly maxFreeFraction: number;
  /** Give up (full dump) when struct pages show more than this many impossible values. */
  readonly maxAnomalies: number;
  /** Optimise the classifier's JavaScript loop right after start-up (so the first crash does not pay for JIT); nothing to do when the native decode is built. */
  readonly warmUp: boolean;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    vmcoreinfoFile: {
      type: 'string',
      minLength: 1,
      description: "A file with the guest kernel's VMCOREINFO text, used when the memory image has no VMCOREINFO note.",
    },
    scan: { type: 'boolean', default: true, description: 'Scan guest RAM for VMCOREINFO when no note or file gives it.' },
    maxScanMiB: { type: 'integer', minimum: 1, default: 16384, description: 'Most guest RAM (MiB) scanned for VMCOREINFO.' },
    freeRule: {
      enum: ['buddy', 'refcount-zero'],
      default: 'buddy',
      description: "Free-page rule: 'buddy' (makedumpfile's, safe) or 'refcount-zero' (the research prototype's; also drops pages with _refcount 0).",
    },
    logLines: { type: 'integer', minimum: 0, maximum: 1000, default: 20, description: 'Kernel log lines kept in the triage record.' },
    triage: { type: 'boolean', default: true, description: 'Read the kernel log (panic line, last lines) when a crash is detected.' },
    maxFreeFraction: {
      type: 'number',
      exclusiveMinimum: 0,
      maximum: 1,
      default: 0.98,
      description: 'Fall back to a full dump when more than this fraction of RAM pages is classified free.',
    },
    maxAnomalies: {
      type: 'integer',
      minimum: 0,
      default: 0,
      description: 'Fall back to a full dump when struct pages hold more impossible values (bad buddy or compound orders) than this.',
    },
    warmUp: {
      type: 'boolean',
      default: true,
      description: "Run the page classifier's JavaScript loop once on synthetic data after start-up, so the first crash does not pay for V8's JIT warm-up. Skipped when the native decode (native/classify.c) is built.",
    },
  },
} as const;

const DEFAULTS: LinuxPluginOptions = {
  scan: true,
  maxScanMiB: 16384,
  freeRule: 'buddy',
  logLines: 20,
  triage: true,
  maxFreeFraction: 0.98,
  maxAnomalies: 0,
  warmUp: true,
};

/** Warm the classifier up with Linux 6.1's struct page layout (offsets are read per run, so any layout benefits). */
export function warmUp(): void {
  const info = Vmcoreinfo.parse(formatVmcoreinfo([['OSRELEASE', '6.1.0'], ['PAGESIZE', '4096'], ...LINUX_6_1_LAYOUT]), { origin: 'warm-up' });
  warmUpClassifier(pageLayoutFromVmcoreinfo(info));
}

/** What the plugin keeps per session (`session.data.get('linux')`). */
export interface LinuxSessionState {
  kernel?: LinuxKernel;
  /** Why the kernel could not be introspected (then selectPages falls back). */
  error?: VcvError;
  triage?: { panicLine?: string; lastLines: string[]; records: number; ms: number };
  /** The last classification's figures (its `excluded` bitmap is applied to the page set and not kept: empty). */
  classification?: ClassifyResult;
}

/** The fields of CrashSession the plugin uses (so tests and other hosts can drive it). */
export type LinuxSessionLike = Pick<CrashSession, 'memory' | 'data' | 'addNote' | 'dumpInfo' | 'setTriage' | 'warn' | 'log' | 'signal'>;

function toVcv(e: unknown, what: string): VcvError {
  if (e instanceof VcvError) return e;
  return new VcvError('VCV_ERR_INTERNAL', `${what}: ${(e as Error)?.message ?? String(e)}`, { plugin: PLUGIN_NAME }, { cause: e });
}

function stateOf(session: LinuxSessionLike): LinuxSessionState {
  let s = session.data.get(PLUGIN_NAME) as LinuxSessionState | undefined;
  if (!s) {
    s = {};
    session.data.set(PLUGIN_NAME, s);
  }
  return s;
}

async function openKernel(session: LinuxSessionLike, opts: LinuxPluginOptions): Promise<LinuxKernel> {
  return LinuxKernel.open(session.memory, {
    ...(opts.vmcoreinfoFile !== undefined ? { file: opts.vmcoreinfoFile } : {}),
    scan: opts.scan,
    maxScanBytes: opts.maxScanMiB * 1024 * 1024,
    signal: session.signal,
  });
}

/** onCrash: VMCOREINFO, dump header facts, triage. Never throws for guest-data problems. */
export async function linuxOnCrash(session: LinuxSessionLike, options: Partial<LinuxPluginOptions> = {}): Promise<void> {
  const opts = { ...DEFAULTS, ...options };
  const state = stateOf(session);
  const t0 = performance.now();
  let kernel: LinuxKernel;
  try {
    kernel = await openKernel(session, opts);
  } catch (e) {
    if (isVcvError(e, 'VCV_ERR_ABORTED')) throw e;
    const err = toVcv(e, 'opening the guest kernel failed');
    state.error = err;
    session.warn(err.code, `Linux introspection unavailable (${err.message}); the dump will hold all RAM pages`, PLUGIN_NAME);
    return;
  }
  state.kernel = kernel;
  session.addNote(kernel.info.toNote());
  session.dumpInfo.physBase = kernel.physBase;
  const uts = kernel.tryUtsname();
  if (uts) Object.assign(session.dumpInfo.utsname, uts);
  if (kernel.found.rejected.length > 0) {
    session.warn(
      'VCV_ERR_VMCOREINFO_INVALID',
      `VMCOREINFO taken from ${kernel.found.origin} after rejecting: ${kernel.found.rejected.slice(0, 4).join('; ')}`,
      PLUGIN_NAME,
    );
  }
  session.log.info(
    {
      plugin: PLUGIN_NAME,
      osrelease: kernel.info.osrelease,
      vmcoreinfo: kernel.found.origin,
      ...(kernel.found.gpa !== undefined ? { vmcoreinfoGpa: kernel.found.gpa } : {}),
      pagingLevels: kernel.paging.levels,
      ms: Math.round(performance.now() - t0),
    },
    `guest kernel ${kernel.info.osrelease} (VMCOREINFO from ${kernel.found.origin})`,
  );
  if (!opts.triage) return;
  try {
    const log = await kernel.printk();
    const panicLine = findPanicLine(log.records);
    const lines = lastLines(log.records, opts.logLines);
    const ms = Math.round(performance.now() - t0);
    state.triage = { ...(panicLine !== undefined ? { panicLine } : {}), lastLines: lines, records: log.records.length, ms };
    session.setTriage({
      ...(panicLine !== undefined ? { panicLine } : {}),
      lastLines: lines,
      source: 'linux printk ring buffer',
      osrelease: kernel.info.osrelease,
      vmcoreinfo: kernel.found.origin,
      logRecords: log.records.length,
    });
    session.log.info({ plugin: PLUGIN_NAME, ms, records: log.records.length }, panicLine ?? 'no panic line in the kernel log');
  } catch (e) {
    if (isVcvError(e, 'VCV_ERR_ABORTED')) throw e;
    const err = toVcv(e, 'reading the kernel log failed');
    session.warn(err.code, `kernel log unavailable: ${err.message}`, PLUGIN_NAME);
  }
}

/** Plausibility of a classification; throws VCV_ERR_INTROSPECTION with the reason when it is not. */
export function checkPlausible(r: ClassifyResult, structPageSize: number, opts: Pick<LinuxPluginOptions, 'maxFreeFraction' | 'maxAnomalies'>): void {
  const bad = (why: string) => new VcvError('VCV_ERR_INTROSPECTION', why, { plugin: PLUGIN_NAME });
  if (r.ramPages === 0) return;
  if (r.coveredPages === 0) throw bad('no present memory section covers guest RAM');
  const anomalies = r.anomalies.badBuddyOrder + r.anomalies.badCompoundOrder;
  if (anomalies > opts.maxAnomalies) {
    throw bad(
      `struct pages hold impossible values (${r.anomalies.badBuddyOrder} free blocks with an order ≥ LENGTH(zone.free_area), ${r.anomalies.badCompoundOrder} misaligned compound pages): the struct page array looks corrupt`,
    );
  }
  const free = r.counts.free + (r.refcountZero.excluded ? r.refcountZero.extraPages : 0);
  if (free / r.ramPages > opts.maxFreeFraction) {
    throw bad(`${free} of ${r.ramPages} RAM pages (${((100 * free) / r.ramPages).toFixed(1)} %) look free, more than ${opts.maxFreeFraction * 100} %: not believable`);
  }
  // The struct page array itself (SIZE(page) / PAGE_SIZE of RAM) is never excluded; keeping less than
  // half of that means the classification is nonsense.
  const kept = r.ramPages - Math.min(r.ramPages, r.excludedPages);
  const floor = (r.coveredPages * structPageSize) / 4096 / 2;
  if (kept < floor) {
    throw bad(`only ${kept} of ${r.ramPages} RAM pages would be kept, fewer than the struct page array alone occupies: not believable`);
  }
}

/** selectPages: classify and narrow `pages.dump`; on any failure set `pages.fallback` and leave it whole. */
export async function linuxSelectPages(pages: PageSet, session: LinuxSessionLike, options: Partial<LinuxPluginOptions> = {}): Promise<PageSet> {
  const opts = { ...DEFAULTS, ...options };
  const state = stateOf(session);
  const fallback = (err: VcvError): PageSet => {
    pages.fallback = { plugin: PLUGIN_NAME, code: err.code, reason: err.message };
    pages.notes[PLUGIN_NAME] = { fallback: err.code };
    return pages;
  };
  if (!state.kernel) {
    if (state.error) return fallback(state.error);
    try {
      state.kernel = await openKernel(session, opts);
    } catch (e) {
      if (isVcvError(e, 'VCV_ERR_ABORTED')) throw e;
      state.error = toVcv(e, 'opening the guest kernel failed');
      return fallback(state.error);
    }
  }
  const kernel = state.kernel;
  let r: ClassifyResult;
  try {
    r = await kernel.classify({ dumpLevel: pages.dumpLevel, rule: opts.freeRule, signal: session.signal });
    checkPlausible(r, kernel.pageLayout.size, opts);
  } catch (e) {
    if (isVcvError(e, 'VCV_ERR_ABORTED')) throw e;
    return fallback(toVcv(e, 'page classification failed'));
  }
  const dump = pages.dump as PageSet['dump'] & { bytes?: Uint8Array };
  if (dump.bytes instanceof Uint8Array && dump.size === pages.maxPfn) {
    // dumpfmt's Bitmap: same bit order, clear in bulk.
    const n = Math.min(dump.bytes.length, r.excluded.length);
    for (let i = 0; i < n; i++) if (r.excluded[i] !== 0) dump.bytes[i]! &= ~r.excluded[i]!;
  } else {
    applyExclusions(dump, r.excluded);
  }
  // Keep the figures, not the bitmap: it is in `pages.dump` now, and it is maxPfn/8 bytes (32 MiB for
  // a 1 TiB guest) the session would otherwise hold until its end.
  state.classification = { ...r, excluded: new Uint8Array(0) };
  const ex = pages.excluded;
  const add = (k: string, v: number) => {
    if (v > 0 || k in ex) ex[k] = (ex[k] ?? 0) + v;
  };
  add('free', r.counts.free + (r.refcountZero.excluded ? r.refcountZero.extraPages : 0));
  add('cache', r.counts.cache);
  add('privateCache', r.counts.privateCache);
  add('user', r.counts.user);
  add('offline', r.counts.offline);
  add('hwpoison', r.counts.hwpoison);
  const seconds = r.elapsedMs / 1000;
  pages.notes[PLUGIN_NAME] = {
    rule: r.rule,
    dumpLevel: r.dumpLevel,
    counts: r.counts,
    refcountZero: r.refcountZero,
    anomalies: r.anomalies,
    ramPages: r.ramPages,
    coveredPages: r.coveredPages,
    sections: r.sections,
    classifyMs: Math.round(r.elapsedMs),
    decoder: r.decoder,
    gibPerSecond: seconds > 0 ? Math.round(((r.ramPages * 4096) / 2 ** 30 / seconds) * 10) / 10 : null,
    vmcoreinfo: kernel.found.origin,
  };
  session.log.info(
    { plugin: PLUGIN_NAME, counts: r.counts, ms: Math.round(r.elapsedMs), refcountZero: r.refcountZero.extraPages },
    `classified ${r.ramPages} pages: ${r.excludedPages} excluded at level ${r.dumpLevel}`,
  );
  return pages;
}

const plugin: VicoverPlugin<Partial<LinuxPluginOptions>> = {
  name: PLUGIN_NAME,
  coreVersion: '^0.1.0',
  description: 'Linux x86-64 guest introspection: VMCOREINFO, page tables, struct-page page filter (makedumpfile levels), kernel log triage',
  optionsSchema,
  apply(core: Vicover, options: Partial<LinuxPluginOptions>) {
    const opts = { ...DEFAULTS, ...options };
    core.hooks.onCrash.tapPromise({ name: PLUGIN_NAME, stage: STAGE.TRIAGE }, (session) => linuxOnCrash(session, opts));
    core.hooks.selectPages.tapPromise({ name: PLUGIN_NAME, stage: STAGE.FILTER }, (pages, session) => linuxSelectPages(pages, session, opts));
    if (opts.warmUp && !nativeDecodeAvailable()) {
      setTimeout(() => {
        try {
          warmUp();
        } catch (e) {
          core.logger(PLUGIN_NAME).debug({ err: (e as Error).message }, 'classifier warm-up failed');
        }
      }, 0).unref();
    }
  },
};

export default plugin;
