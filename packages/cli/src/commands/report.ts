import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { VcvError, wrapError } from '@vicover/core';
import { parseReport, reportFigures, renderReportText, writeReportHtml } from '@vicover/report';
import type { Ctx } from '../main.js';
import { printJson, printText, reportError } from '../output.js';

/** report.json files are small; a multi-megabyte "report" is something else. */
const MAX_REPORT_BYTES = 256 * 1024 * 1024;

export function registerReportCommand(program: Command, ctx: Ctx): void {
  program
    .command('report')
    .description('check a crash report (report.json), print its key figures, and render it as a self-contained HTML page with a timeline')
    .argument('<report>', 'report.json of a crash session, or its session directory (under dump.dir, next to the dump)')
    .option('--html <out>', 'write the HTML page here (created 0600; replaced if it exists)')
    .option('--json', 'print the key figures as JSON instead of text')
    .action(async (arg: string, opts: { html?: string; json?: boolean }) => {
      try {
        let file = arg;
        let st = await fsp.stat(file).catch((e) => {
          throw wrapError(e, 'VCV_ERR_IO', `cannot read ${file}`, { file });
        });
        // A session directory stands for the report.json in it.
        if (st.isDirectory()) {
          file = path.join(arg, 'report.json');
          st = await fsp.stat(file).catch((e) => {
            throw wrapError(e, 'VCV_ERR_IO', `${arg} is a directory without a report.json`, { file });
          });
        }
        if (!st.isFile()) throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${file} is not a file (expected a report.json)`, { file });
        if (st.size > MAX_REPORT_BYTES) throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${file} is ${st.size} bytes: too large for a crash report`, { file });
        const text = await fsp.readFile(file, 'utf8').catch((e) => {
          throw wrapError(e, 'VCV_ERR_IO', `cannot read ${file}`, { file });
        });
        const report = parseReport(text, file);
        const html = opts.html ? await writeReportHtml(opts.html, report, { source: path.resolve(file) }) : undefined;
        if (opts.json) printJson({ file: path.resolve(file), ...(html ? { html } : {}), figures: reportFigures(report), warnings: report.warnings });
        else printText(renderReportText(report) + (html ? `  ${'html'.padEnd(13)} ${html}\n` : ''));
        ctx.exitCode = 0;
      } catch (e) {
        ctx.exitCode = reportError(e, opts.json);
      }
    });
}
