/** @vicover/plugin-shared-fs — the shared-FS recovery strategy. See docs/recovery.md. */
export { default, PLUGIN_NAME, optionsSchema, describeCheck } from './plugin.js';
export type { SharedFsOptions } from './plugin.js';
export { probeHttp, probeTcp, expand } from './health.js';
export type { HealthOptions, ProbeResult } from './health.js';
