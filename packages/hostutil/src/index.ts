export { run, shortText, type RunOptions, type RunResult } from './exec.js';
export { followFile } from './follow.js';
export { editKernelCmdline, kernelCmdlineEditsSchema, type KernelCmdlineEdits } from './cmdline.js';
