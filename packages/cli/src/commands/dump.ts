import type { Command } from 'commander';
import { Option } from 'commander';
import type { CrashReport } from '@vicover/core';
import { VcvError } from '@vicover/errors';
import type { Ctx } from '../main.js';
import { fmtBytes, printJson, printText, reportError } from '../output.js';

/** makedumpfile's dump-level bits, by the names `--exclude` takes. */
export const EXCLUDE_BITS: Readonly<Record<string, number>> = Object.freeze({
  zero: 1,
  cache: 2,
  'private-cache': 4,
  user: 8,
  free: 16,
});

export function levelFromExclude(list: string): number {
  let level = 0;
  for (const raw of list.split(',')) {
    const name = raw.trim();
    if (!name) continue;
    const bit = EXCLUDE_BITS[name];
    if (bit === undefined) {
      throw new VcvError('VCV_ERR_USAGE', `--exclude: unknown class "${name}" (classes: ${Object.keys(EXCLUDE_BITS).join(', ')})`);
    }
    level |= bit;
  }
  return level;
}

export interface DumpOptions {
  output: string;
  format: 'kdump' | 'elf';
  compress: 'none' | 'zlib' | 'snappy';
  level?: string;
  exclude?: string;
  vmcoreinfo?: string;
  layout: 'auto' | 'flat' | 'pc';
  freeRule: 'buddy' | 'refcount-zero';
  force?: boolean;
  json?: boolean;
  progress?: boolean;
  logLevel?: string;
}

export function dumpJson(r: CrashReport, seconds: number) {
  return {
    pages: { total: r.pages.total, dumped: r.pages.dumped, excluded: { ...r.pages.excluded } },
    bytesWritten: r.dump.bytesWritten,
    seconds: Math.round(seconds * 1000) / 1000,
    file: r.dump.file,
    format: r.dump.format,
    compression: r.dump.compression,
    level: r.dump.level,
    complete: r.dump.complete,
    ...(r.dump.fallback ? { fallback: r.dump.fallback } : {}),
    ...(r.extra.selectPages ? { filter: r.extra.selectPages } : {}),
    warnings: r.warnings,
  };
}

export async function runDump(image: string, o: DumpOptions): Promise<{ report: CrashReport; seconds: number }> {
  const t0 = performance.now();
  let level = 31;
  if (o.level !== undefined && o.exclude !== undefined) throw new VcvError('VCV_ERR_USAGE', 'give --level or --exclude, not both');
  if (o.level !== undefined) {
    level = Number(o.level);
    if (!Number.isInteger(level) || level < 0 || level > 31) throw new VcvError('VCV_ERR_USAGE', `--level must be an integer 0-31, got ${o.level}`);
  } else if (o.exclude !== undefined) level = levelFromExclude(o.exclude);
  if (o.format === 'elf' && o.compress !== 'none') throw new VcvError('VCV_ERR_USAGE', 'ELF dumps cannot be compressed; use --format kdump');
  const showProgress = o.progress !== false && !o.json && process.stderr.isTTY === true;
  const [{ CrashSession }, { openImage }, { createCore }, progress] = await Promise.all([
    import('@vicover/core'),
    import('@vicover/image'),
    import('../setup.js'),
    showProgress ? import('../progress.js') : null,
  ]);
  const { core } = await createCore({
    inline: {
      plugins: [['linux', { ...(o.vmcoreinfo ? { vmcoreinfoFile: o.vmcoreinfo } : {}), freeRule: o.freeRule, warmUp: false }]],
      dump: { format: o.format, compression: o.compress, level },
      log: { level: o.logLevel ?? (o.json ? 'error' : 'warn') },
    },
    noDefaultBackend: true,
    logLevel: o.logLevel ?? (o.json ? 'error' : 'warn'),
  });
  const memory = await openImage(image, { layout: o.layout });
  const bar = progress ? progress.progressBar('dump') : null;
  const session = new CrashSession({
    core,
    backend: null,
    memory,
    offline: true,
    outputFile: o.output,
    overwrite: o.force === true,
    event: { vm: { id: image, name: image.split('/').pop() ?? 'image', memoryBytes: memory.ranges.reduce((s, r) => s + r.end - r.start, 0) }, at: Date.now(), reason: `offline dump of ${image}` },
    ...(bar ? { onProgress: (p) => bar.update(p.pagesWritten, p.pagesTotal, `${fmtBytes(p.bytesWritten)} written`) } : {}),
  });
  const report = await session.run();
  bar?.stop();
  if (report.state === 'failed') {
    throw session.error ?? new VcvError('VCV_ERR_SESSION', report.error?.message ?? 'dump failed');
  }
  return { report, seconds: (performance.now() - t0) / 1000 };
}

export function registerDumpCommand(program: Command, ctx: Ctx): void {
  program
    .command('dump')
    .description('dump a memory image (raw RAM file, ELF or kdump vmcore) selectively, as makedumpfile would, into a kdump or ELF file')
    .argument('<image>', 'raw RAM file (QEMU memory-backend-file), ELF vmcore, or kdump file')
    .requiredOption('-o, --output <file>', 'output dump file (created 0600; never overwritten without --force)')
    .addOption(new Option('-f, --format <format>', 'output format').choices(['kdump', 'elf']).default('kdump'))
    .addOption(new Option('--compress <codec>', 'per-page compression (kdump; lzo is the fastest that Debian makedumpfile reads)').choices(['none', 'zlib', 'lzo', 'snappy']).default('none'))
    .option('-d, --level <0-31>', 'makedumpfile dump level: 1 zero, 2 cache, 4 private cache, 8 user data, 16 free (default 31)')
    .option('--exclude <classes>', 'comma-separated classes to exclude instead of --level: zero,cache,private-cache,user,free')
    .option('--vmcoreinfo <file>', 'VMCOREINFO text to use when the image carries none (else guest RAM is scanned)')
    .addOption(new Option('--layout <layout>', 'layout of a raw RAM file: flat (offset = GPA) or pc (≥ 3.5 GiB: split at 3 GiB around the PCI hole)').choices(['auto', 'flat', 'pc']).default('auto'))
    .addOption(new Option('--free-rule <rule>', "free-page rule: buddy (makedumpfile's) or refcount-zero (the research prototype's; counted and reported)").choices(['buddy', 'refcount-zero']).default('buddy'))
    .option('--force', 'replace an existing output file')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print one JSON object: pages (total, dumped, excluded by class), bytesWritten, seconds')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .action(async (image: string, o: DumpOptions) => {
      try {
        const { report, seconds } = await runDump(image, o);
        if (o.json) printJson(dumpJson(report, seconds));
        else {
          const ex = report.pages.excluded;
          printText(
            [
              `${report.dump.file}: ${report.dump.format}${report.dump.format === 'kdump' ? `, ${report.dump.compression}` : ''}, level ${report.dump.level}`,
              `  pages      ${report.pages.dumped} dumped of ${report.pages.total}`,
              `  excluded   zero ${ex.zero}, cache ${ex.cache}, private cache ${ex.privateCache}, user ${ex.user}, free ${ex.free}, offline ${ex.offline}`,
              `  written    ${fmtBytes(report.dump.bytesWritten)} in ${seconds.toFixed(2)} s`,
              report.triage.panicLine ? `  panic      ${report.triage.panicLine}` : '',
              report.dump.fallback ? `  FULL DUMP  ${report.dump.fallback.code}: ${report.dump.fallback.reason}` : '',
            ]
              .filter(Boolean)
              .join('\n'),
          );
        }
        ctx.exitCode = 0;
      } catch (e) {
        ctx.exitCode = reportError(e, o.json);
      }
    });
}
