import type { Command } from 'commander';
import { wrapError } from '@vicover/errors';
import type { Ctx } from '../main.js';
import { fmtBytes, printJson, printText, reportError } from '../output.js';

/** `KEY=value` lookup in VMCOREINFO text. */
function vmcoreinfoValue(text: string | undefined, key: string): string | undefined {
  if (!text) return undefined;
  const m = text.match(new RegExp(`^${key.replace(/[()]/g, '\\$&')}=(.*)$`, 'm'));
  return m?.[1]?.trim();
}

export interface InspectResult {
  file: string;
  format: string;
  compression: string;
  incomplete: boolean;
  pageSize: number;
  maxPfn: number;
  pages: { dumped: number; ram?: number; lost?: number };
  dumpLevel?: number;
  osrelease?: string;
  cpus: number;
  notes: { name: string; type: number; size: number }[];
  vmcoreinfoBytes: number;
}

export async function inspectDump(file: string): Promise<InspectResult> {
  const { openDump, KdumpReader, NT_PRSTATUS } = await import('@vicover/dumpfmt');
  const r = await openDump(file).catch((e) => {
    throw wrapError(e, 'VCV_ERR_IO', `cannot open ${file}`);
  });
  try {
    const out: InspectResult = {
      file,
      format: r.format,
      compression: r.compression,
      incomplete: r.incomplete,
      pageSize: r.pageSize,
      maxPfn: r.maxPfn,
      pages: { dumped: r.pages },
      osrelease: vmcoreinfoValue(r.vmcoreinfo, 'OSRELEASE'),
      cpus: r.notes.filter((n) => n.type === NT_PRSTATUS && n.name === 'CORE').length,
      notes: r.notes.map((n) => ({ name: n.name, type: n.type, size: n.desc.length })),
      vmcoreinfoBytes: r.vmcoreinfo?.length ?? 0,
    };
    if (r instanceof KdumpReader) {
      out.pages.ram = r.pageCounts.ram;
      out.dumpLevel = r.dumpLevel;
      if (r.incomplete) out.pages.lost = r.lostPages().count();
    }
    return out;
  } finally {
    r.close();
  }
}

export function registerInspectCommand(program: Command, ctx: Ctx): void {
  program
    .command('inspect')
    .description('describe a dump file: format, page counts, compression, kernel release (from VMCOREINFO)')
    .argument('<dump>', 'kdump-compressed (seekable or flattened) or ELF vmcore')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      try {
        const r = await inspectDump(file);
        if (opts.json) printJson(r);
        else {
          printText(
            [
              `${r.file}`,
              `  format       ${r.format}${r.incomplete ? '  (INCOMPLETE: the writer did not finish)' : ''}`,
              `  compression  ${r.compression}`,
              `  kernel       ${r.osrelease ?? '(no VMCOREINFO)'}`,
              `  pages        ${r.pages.dumped} dumped (${fmtBytes(r.pages.dumped * r.pageSize)})${r.pages.ram !== undefined ? ` of ${r.pages.ram} RAM pages` : ''}${r.pages.lost ? `, ${r.pages.lost} lost` : ''}`,
              r.dumpLevel !== undefined ? `  dump level   ${r.dumpLevel}` : '',
              `  cpus         ${r.cpus}`,
              `  notes        ${r.notes.map((n) => `${n.name}/${n.type}`).join(', ') || '(none)'}`,
            ]
              .filter(Boolean)
              .join('\n'),
          );
        }
        ctx.exitCode = 0;
      } catch (e) {
        ctx.exitCode = reportError(e, opts.json);
      }
    });
}
