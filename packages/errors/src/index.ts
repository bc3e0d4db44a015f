export { VcvError, isVcvError, wrapError } from './error.js';
export type { VcvErrorDetails } from './error.js';
export { codes, exitCodes } from './codes.js';
export type { ErrorCode, CodeInfo } from './codes.js';
