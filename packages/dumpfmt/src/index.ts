/**
 * @vicover/dumpfmt — kdump-compressed and ELF vmcore writers and readers. See docs/formats.md.
 */
export { Bitmap, RankIndex, popcount32 } from './bitmap.js';
export {
  encodeNotes,
  parseNotes,
  prstatusNote,
  decodePrstatus,
  vmcoreinfoNote,
  findVmcoreinfo,
  NT_PRSTATUS,
  NT_VMCOREINFO,
  X86_REG_NAMES,
  PRSTATUS_SIZE,
} from './notes.js';
export type { ElfNote, X86Regs, X86RegName, Prstatus } from './notes.js';
export { writableCompressions, COMPRESSION_FLAG, DUMP_DH_COMPRESSED_INCOMPLETE } from './codec/index.js';
export type { Compression } from './codec/index.js';
export { KdumpWriter } from './kdump/writer.js';
export type { KdumpWriterOptions, KdumpCheckpoint, KdumpUtsname } from './kdump/writer.js';
export { KdumpReader } from './kdump/reader.js';
export type { KdumpStats } from './kdump/reader.js';
export type { DiskDumpHeader, Utsname } from './kdump/header.js';
export type { KdumpSubHeader } from './kdump/subheader.js';
export type { PageDesc } from './kdump/pagedesc.js';
export { ElfWriter } from './elf/writer.js';
export type { ElfWriterOptions, ElfCheckpoint } from './elf/writer.js';
export { ElfCoreReader } from './elf/reader.js';
export type { LoadSegment } from './elf/reader.js';
export { detectFormat, openDump, openDumpSync } from './detect.js';
export type { DetectedFormat } from './detect.js';
export type { DumpReader, DumpFormat, ReaderOptions } from './types-reader.js';
export type { ChunkResult, WriterSummary } from './types.js';
export type { DumpFs, DumpFileHandle } from './fsio.js';
export { nodeFs } from './fsio.js';
export type { ByteSource } from './source.js';
export type { KdumpLayout } from './kdump/layout.js';
export type { Elf64Ehdr, Elf64Phdr } from './elf/structs.js';
