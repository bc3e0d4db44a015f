export { SyntheticMemory, PhysAllocator } from './memory.js';
export type { SyntheticRam } from './memory.js';
export { PageTableBuilder } from './pagetables.js';
export type { LeafSize } from './pagetables.js';
export { SyntheticKernel, buildSyntheticKernel, LINUX_6_1_LAYOUT } from './kernel.js';
export type { SyntheticKernelOptions, SyntheticLogRecord } from './kernel.js';
