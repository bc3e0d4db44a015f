export { openRawImage, rawSegments, resolveLayout, PC_LOWMEM, PC_SPLIT_THRESHOLD, FOUR_GIB } from './raw.js';
export type { RawLayout, RawImageOptions } from './raw.js';
export { openElfVmcore, openKdump, openDumpImage, DumpMemorySource } from './dump.js';
export { openImage } from './open.js';
export type { ImageFormat, OpenImageOptions } from './open.js';
export { SegmentedFileSource, PositionalFile, segmentsToRanges } from './segments.js';
export type { Segment } from './segments.js';
