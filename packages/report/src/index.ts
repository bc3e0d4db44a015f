/**
 * @vicover/report — a crash report (report.json) as a self-contained HTML page with an SVG timeline,
 * as text for a terminal, and the check that a file is a Vicover report at all.
 */
export { renderReportHtml } from './html.js';
export type { HtmlOptions } from './html.js';
export { renderReportSvg, timelineSummary } from './svg.js';
export type { TimelineSvgOptions } from './svg.js';
export { renderReportText } from './text.js';
export { reportFigures, reportEndMs, PAGE_CLASSES } from './figures.js';
export type { ReportFigures } from './figures.js';
export { parseReport, checkReport, reportProblems, REPORT_VERSION } from './validate.js';
export { writeReportHtml, REPORT_FILE_MODE } from './write.js';
export { esc as escapeHtml, sanitizeText, fmtBytes, fmtSeconds } from './format.js';
export { htmlReportWriter } from './hook.js';
export type { HtmlReportWriter } from './hook.js';
