/** @vicover/plugin-qemu — the QEMU/KVM backend. See docs/qemu.md. */
export { default, PLUGIN_NAME } from './plugin.js';
export { QemuBackend } from './backend.js';
export type { QemuDefinition } from './backend.js';
export { optionsSchema } from './options.js';
export type { QemuOptions, VmOptions, RecoveryOptions } from './options.js';
export { QmpClient, QmpWatcher } from './qmp.js';
export type { QmpEvent, QmpGreeting } from './qmp.js';
export { parseInfoRegisters, cpuNotes } from './registers.js';
export type { ParsedCpu } from './registers.js';
export { parseArgv, formatArgv, parseProps, formatProps, recoveryArgv, endpointsOf, drivesOf, ramOf, qmpSocketsOf, parseSize } from './argv.js';
export { fileRangesOf, allocatedBytes, punchHoles } from './ramfile.js';
