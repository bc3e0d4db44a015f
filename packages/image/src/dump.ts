/**
 * MemorySources over vmcores, via @vicover/dumpfmt's readers:
 * - ELF (QEMU dump-guest-memory, makedumpfile -E, ours): RAM = the PT_LOAD ranges (by p_paddr); bytes
 *   between p_filesz and p_memsz read as zero.
 * - kdump-compressed (seekable or flattened): RAM = the 1st bitmap; a page the dump excluded (2nd
 *   bitmap clear) reads as VCV_ERR_PAGE_NOT_DUMPED.
 * The dump's notes (NT_PRSTATUS, VMCOREINFO, …) are exposed as `notes`.
 */
import type { ElfNote, MemorySource, PhysRange } from '@vicover/core';
import { ElfCoreReader, KdumpReader, openDump, type DumpReader } from '@vicover/dumpfmt';
import { VcvError } from '@vicover/errors';
import { PAGE_SIZE, PositionalFile, SegmentedFileSource, segmentsToRanges, type Segment } from './segments.js';

function checkRead(src: MemorySource, gpa: number, buf: Uint8Array, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(gpa) ||
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    gpa < 0 ||
    offset < 0 ||
    length < 0 ||
    offset + length > buf.length
  ) {
    throw new VcvError('VCV_ERR_MEMORY_RANGE', `bad read request gpa=${gpa} offset=${offset} length=${length}`, { gpa, length });
  }
  // Every byte must be inside the (merged, sorted) ranges; a read may not span a hole.
  const rs = src.ranges;
  let lo = 0;
  let hi = rs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = rs[mid]!;
    if (gpa < r.start) hi = mid - 1;
    else if (gpa >= r.end) lo = mid + 1;
    else if (gpa + length <= r.end) return;
    else break;
  }
  if (length === 0) return;
  throw new VcvError(
    'VCV_ERR_MEMORY_RANGE',
    `guest-physical 0x${gpa.toString(16)} (+${length}) is outside the RAM of ${src.description}`,
    { gpa, length },
  );
}

/** Adapts a dumpfmt DumpReader (synchronous reads) to the MemorySource contract. */
export class DumpMemorySource implements MemorySource {
  readonly ranges: readonly PhysRange[];
  readonly maxPfn: number;
  readonly notes: readonly ElfNote[];
  /** kdump input: the pages the dump holds (its 2nd bitmap). */
  readonly present?: MemorySource['present'];
  private closed = false;

  constructor(
    readonly reader: DumpReader,
    readonly description: string,
    runs: Iterable<[number, number]>,
  ) {
    const ranges: PhysRange[] = [];
    for (const [s, e] of runs) {
      const start = s * PAGE_SIZE;
      const end = e * PAGE_SIZE;
      const last = ranges[ranges.length - 1];
      if (last && last.end >= start) ranges[ranges.length - 1] = { start: last.start, end: Math.max(last.end, end) };
      else ranges.push({ start, end });
    }
    this.ranges = ranges;
    const last = ranges[ranges.length - 1];
    this.maxPfn = last ? last.end / PAGE_SIZE : 0;
    this.notes = reader.notes;
    if (reader instanceof KdumpReader && reader.dump !== reader.ram) this.present = reader.dump;
  }

  readSync(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    checkRead(this, gpa, buf, offset, length);
    if (this.closed) throw new VcvError('VCV_ERR_IO', `${this.description} is closed`, {});
    if (length > 0) this.reader.readPhys(gpa, buf, offset, length);
  }

  async read(gpa: number, buf: Uint8Array, offset: number, length: number): Promise<void> {
    const r = this.reader;
    if (r instanceof ElfCoreReader) {
      // Streaming reads of an ELF image overlap with the writer (libuv thread pool).
      checkRead(this, gpa, buf, offset, length);
      if (this.closed) throw new VcvError('VCV_ERR_IO', `${this.description} is closed`, {});
      if (length > 0) await r.readPhysAsync(gpa, buf, offset, length);
      return;
    }
    this.readSync(gpa, buf, offset, length);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.reader.close();
  }
}

function ramRuns(reader: DumpReader): Iterable<[number, number]> {
  if (reader instanceof KdumpReader) return reader.ram.runs();
  return reader.dumpedRuns();
}

function fromReader(reader: DumpReader, path: string): DumpMemorySource {
  return new DumpMemorySource(reader, `${reader.format} ${path}`, ramRuns(reader));
}

/** An ELF vmcore (QEMU's or makedumpfile's). */
export async function openElfVmcore(path: string): Promise<MemorySource> {
  return elfSource(await ElfCoreReader.open(path), path);
}

/**
 * A plain ELF vmcore is segments of one file, like a raw RAM file: read it the same way (positional
 * reads; page data can be copied straight from the file). Overlapping or out-of-file PT_LOADs, which
 * the segment view refuses, keep the reader's own lookup.
 */
function elfSource(reader: ElfCoreReader, path: string): MemorySource {
  if (!reader.isPlainFile || reader.truncated || reader.loads.length === 0) return fromReader(reader, path);
  const segments: Segment[] = reader.loads
    .filter((l) => l.memsz > 0)
    .map((l) => ({ gpa: Number(l.paddr), memBytes: l.memsz, fileOffset: l.offset, fileBytes: l.filesz }))
    .sort((a, b) => a.gpa - b.gpa);
  let file: PositionalFile | undefined;
  try {
    if (segments.some((s) => s.gpa % PAGE_SIZE !== 0 || s.memBytes % PAGE_SIZE !== 0)) return fromReader(reader, path);
    segmentsToRanges(segments, path); // throws on overlaps and impossible values
    file = PositionalFile.open(path);
    const src = new SegmentedFileSource(`elf ${path}`, file, segments, reader.notes);
    reader.close();
    return src;
  } catch {
    void file?.close();
    return fromReader(reader, path);
  }
}

/** A kdump-compressed vmcore (reading an excluded page gives VCV_ERR_PAGE_NOT_DUMPED). */
export async function openKdump(path: string): Promise<MemorySource> {
  const reader = await openDump(path);
  if (reader.format === 'elf') {
    reader.close();
    throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${path} is an ELF vmcore, not a kdump-compressed one`, { file: path });
  }
  return fromReader(reader, path);
}

/** Any vmcore dumpfmt reads (kdump, flattened kdump, ELF, flattened ELF). */
export async function openDumpImage(path: string): Promise<MemorySource> {
  const reader = await openDump(path);
  return reader instanceof ElfCoreReader ? elfSource(reader, path) : fromReader(reader, path);
}
