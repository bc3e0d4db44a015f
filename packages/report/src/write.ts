/** Writing the page next to report.json: private (0600) like every file of a crash session. */
import { promises as fsp, constants as C } from 'node:fs';
import * as path from 'node:path';
import { wrapError, type CrashReport } from '@vicover/core';
import { renderReportHtml, type HtmlOptions } from './html.js';

export const REPORT_FILE_MODE = 0o600;

/**
 * Render `report` and write it to `file` (created 0600; an existing file is replaced and made 0600).
 * Written to a temporary file in the same directory first and renamed, so a reader never sees half a
 * page. Throws VcvError VCV_ERR_OUTPUT_CREATE / VCV_ERR_NO_SPACE / VCV_ERR_IO.
 */
export async function writeReportHtml(file: string, report: CrashReport, o: HtmlOptions = {}): Promise<string> {
  const html = renderReportHtml(report, o);
  const target = path.resolve(file);
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
  try {
    const fh = await fsp.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_TRUNC, REPORT_FILE_MODE);
    try {
      await fh.chmod(REPORT_FILE_MODE);
      await fh.writeFile(html);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `cannot write the HTML report ${target}`, { file: target });
  }
  return target;
}
