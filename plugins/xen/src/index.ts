/** @vicover/plugin-xen — the Xen backend. See docs/xen.md. */
export { default, PLUGIN_NAME } from './plugin.js';
export { XenBackend } from './backend.js';
export type { XenDefinition, ReleaseStats } from './backend.js';
export { optionsSchema } from './options.js';
export type { XenOptions, DomainOptions, RecoveryOptions } from './options.js';
export { HelperClient, SyncHelper, locateHelper, HELPER_NAME, NATIVE_DIR } from './helper.js';
export type { HelperReply } from './helper.js';
export { XenMemorySource } from './memory.js';
export type { DomainLayout, XenMemoryOptions } from './memory.js';
export { parseVcpus, vcpuNotes } from './registers.js';
export type { HelperVcpu, ParsedVcpu } from './registers.js';
export { Xl, parseXlList, isCrashed, isDying, watchXenstore } from './xl.js';
export type { XlDomain } from './xl.js';
export { toXlConfig } from './config.js';
export type { XlConfig } from './config.js';
export { ioMaxLine, parseIoStat, vdevId, qdiskPid, blockDeviceOf, CgroupIo } from './io.js';
