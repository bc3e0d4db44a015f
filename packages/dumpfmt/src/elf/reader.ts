/**
 * ElfCoreReader: ELF64 little-endian vmcores (kernel /proc/vmcore copies, makedumpfile -E, QEMU
 * dump-guest-memory, ours). Program headers are read at e_phoff; e_ehsize is never trusted (QEMU 7.2
 * writes a wrong one). PN_XNUM is honoured. Reads are by physical address (p_paddr).
 *
 * A file cut inside segment data still opens (`truncated`); reads of the missing part give
 * VCV_ERR_PAGE_NOT_DUMPED (reason "truncated"). Bytes between p_filesz and p_memsz read as zeros.
 */
import { VcvError } from '@vicover/errors';
import { invalid, truncated, unsupported } from '../errors.js';
import { findVmcoreinfo, MAX_NOTES_SIZE, parseNotesLenient, type ElfNote } from '../notes.js';
import { FileSource, readExact, type ByteSource } from '../source.js';
import { iterateDumpedPages, type DumpReader, type ReaderOptions } from '../types-reader.js';
import {
  decodeEhdr,
  decodePhdr,
  decodeShdr,
  EHDR_SIZE,
  ELF_DUMP_INCOMPLETE,
  ELFCLASS64,
  ELFDATA2LSB,
  ELFMAG,
  ET_CORE,
  PHDR_SIZE,
  PN_XNUM,
  PT_LOAD,
  PT_NOTE,
  SHDR_SIZE,
  type Elf64Ehdr,
  type Elf64Phdr,
} from './structs.js';

const PAGE_SIZE = 4096;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export interface LoadSegment {
  paddr: bigint;
  vaddr: bigint;
  offset: number;
  filesz: number;
  memsz: number;
}

export class ElfCoreReader implements DumpReader {
  readonly format = 'elf' as const;
  readonly compression = 'none' as const;
  readonly pageSize = PAGE_SIZE;
  readonly ehdr: Elf64Ehdr;
  readonly phdrs: Elf64Phdr[];
  /** PT_LOAD segments in file order. */
  readonly loads: LoadSegment[];
  readonly notes: ElfNote[];
  readonly vmcoreinfo: string | undefined;
  readonly incomplete: boolean;
  /** Some PT_LOAD data lies past the end of the file. */
  readonly truncated: boolean;
  readonly maxPfn: number;
  readonly warnings: string[] = [];
  /** Loads sorted by paddr, as numbers, for lookups. */
  private readonly byAddr: { start: number; fileEnd: number; end: number; offset: number }[];

  private constructor(readonly path: string, private readonly src: ByteSource, opts: ReaderOptions = {}) {
    const file = path;
    const N = src.size;
    const magic = readExact(src, 0, Math.min(4, N), 'ELF header');
    if (magic.length < 4 || !magic.equals(ELFMAG)) throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${file}: no ELF signature`, { file });
    if (N < EHDR_SIZE) throw truncated('ELF header', { file, offset: 0, size: N });
    const eh = decodeEhdr(readExact(src, 0, EHDR_SIZE, 'ELF header'), file);
    this.ehdr = eh;
    if (eh.ident[4] !== ELFCLASS64) throw unsupported(`ELF class ${eh.ident[4]} (only ELF64 vmcores are read)`, { file, offset: 4 });
    if (eh.ident[5] !== ELFDATA2LSB) throw unsupported(`ELF data encoding ${eh.ident[5]} (only little-endian)`, { file, offset: 5 });
    if (eh.type !== ET_CORE) throw unsupported(`ELF type ${eh.type} is not a core file (ET_CORE = 4)`, { file, offset: 16 });

    let phnum = eh.phnum;
    if (phnum === PN_XNUM) {
      if (eh.shoff === 0n) throw invalid('e_phnum is PN_XNUM but there is no section header 0', { file, offset: 56 });
      if (eh.shoff > MAX_SAFE || Number(eh.shoff) + SHDR_SIZE > N) throw truncated('ELF section header 0 (PN_XNUM)', { file, offset: 40 });
      const sh0 = decodeShdr(readExact(src, Number(eh.shoff), SHDR_SIZE, 'ELF section header 0'), 0, Number(eh.shoff), file);
      phnum = sh0.info;
    }
    if (phnum === 0) {
      if (eh.shnum > 0 || eh.shoff !== 0n) {
        throw unsupported(
          'ELF core file with sections but no program headers: this looks like a Xen `xl dump-core` file (.xen_pages/.xen_p2m); ' +
            'Vicover reads vmcores with PT_LOAD segments (crash reads xl dump-core files)',
          { file },
        );
      }
      throw invalid('ELF core file has no program headers', { file, offset: 56 });
    }
    if (eh.phentsize !== PHDR_SIZE) throw invalid(`e_phentsize ${eh.phentsize} (Elf64_Phdr is 56 bytes)`, { file, offset: 54 });
    if (eh.phoff > MAX_SAFE) throw invalid(`e_phoff ${eh.phoff} is out of range`, { file, offset: 32 });
    const phoff = Number(eh.phoff);
    if (phoff + phnum * PHDR_SIZE > N) throw truncated('ELF program headers', { file, offset: phoff, need: phnum * PHDR_SIZE, size: N });
    const ph = readExact(src, phoff, phnum * PHDR_SIZE, 'ELF program headers');
    this.phdrs = [];
    this.loads = [];
    const noteBlobs: { off: number; buf: Buffer }[] = [];
    let noteTotal = 0;
    let trunc = false;
    for (let i = 0; i < phnum; i++) {
      const p = decodePhdr(ph, i * PHDR_SIZE, phoff, file);
      this.phdrs.push(p);
      const at = phoff + i * PHDR_SIZE;
      if (p.type === PT_NOTE) {
        if (p.offset > MAX_SAFE || p.filesz > BigInt(MAX_NOTES_SIZE) || noteTotal + Number(p.filesz) > MAX_NOTES_SIZE) {
          this.warnings.push(`PT_NOTE ${i}: offset ${p.offset}, size ${p.filesz} out of range; ignored`);
          continue;
        }
        const off = Number(p.offset);
        const size = Number(p.filesz);
        noteTotal += size;
        if (off + size > N) throw truncated(`PT_NOTE ${i}`, { file, offset: off, need: size, size: N });
        noteBlobs.push({ off, buf: readExact(src, off, size, 'PT_NOTE') });
      } else if (p.type === PT_LOAD) {
        if (p.offset > MAX_SAFE || p.filesz > MAX_SAFE || p.memsz > MAX_SAFE || p.paddr > MAX_SAFE || p.paddr + p.memsz > MAX_SAFE) {
          throw invalid(`PT_LOAD ${i}: offset/size/paddr out of range`, { file, offset: at });
        }
        if (p.filesz > p.memsz) throw invalid(`PT_LOAD ${i}: p_filesz ${p.filesz} > p_memsz ${p.memsz}`, { file, offset: at });
        const seg = { paddr: p.paddr, vaddr: p.vaddr, offset: Number(p.offset), filesz: Number(p.filesz), memsz: Number(p.memsz) };
        if (seg.offset + seg.filesz > N) trunc = true;
        this.loads.push(seg);
      }
    }
    this.truncated = trunc;
    if (trunc) this.warnings.push('some PT_LOAD data lies past the end of the file (cut short)');
    this.notes = [];
    for (const b of noteBlobs) {
      const res = parseNotesLenient(b.buf, b.off, file);
      this.notes.push(...res.notes);
      if (res.error) this.warnings.push(`PT_NOTE at ${b.off} is damaged after ${res.notes.length} note(s): ${res.error.message}`);
    }
    if (eh.machine !== 62) this.warnings.push(`e_machine is ${eh.machine}, not EM_X86_64 (62)`);
    if (eh.ehsize !== EHDR_SIZE) this.warnings.push(`e_ehsize is ${eh.ehsize}, not 64 (QEMU 7.2 writes a wrong one); ignored`);
    this.vmcoreinfo = findVmcoreinfo(this.notes);
    this.incomplete = (eh.flags & ELF_DUMP_INCOMPLETE) !== 0;
    this.byAddr = this.loads
      .filter((l) => l.memsz > 0)
      .map((l) => ({ start: Number(l.paddr), fileEnd: Number(l.paddr) + l.filesz, end: Number(l.paddr) + l.memsz, offset: l.offset }))
      .sort((a, b) => a.start - b.start);
    let maxEnd = 0;
    for (const s of this.byAddr) maxEnd = Math.max(maxEnd, s.end);
    this.maxPfn = Math.ceil(maxEnd / PAGE_SIZE);
    if (opts.strict && this.warnings.length) throw invalid(`${this.warnings[0]} (strict mode)`, { file, warnings: this.warnings });
  }

  static async open(path: string, opts: ReaderOptions = {}): Promise<ElfCoreReader> {
    return ElfCoreReader.openSync(path, opts);
  }

  static openSync(path: string, opts: ReaderOptions = {}): ElfCoreReader {
    const src = FileSource.open(path);
    try {
      return new ElfCoreReader(path, src, opts);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  /** Read an ELF vmcore from any byte source (e.g. the logical view of a flattened file). Takes ownership of `src`. */
  static fromSource(path: string, src: ByteSource, opts: ReaderOptions = {}): ElfCoreReader {
    return new ElfCoreReader(path, src, opts);
  }

  /** Index in byAddr of the last segment starting at or below addr that contains it, or -1. */
  private find(addr: number): number {
    const a = this.byAddr;
    let lo = 0;
    let hi = a.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]!.start <= addr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    // overlapping segments are rare; walk back to one that contains addr
    for (let i = best; i >= 0 && i > best - 8; i--) if (addr < a[i]!.end) return i;
    return -1;
  }

  /** Pages covered by PT_LOAD segments. */
  get pages(): number {
    let n = 0;
    for (const [s, e] of this.dumpedRuns()) n += e - s;
    return n;
  }

  dumpedPages(opts: { skipUnreadable?: boolean } = {}): Generator<[number, Buffer]> {
    return iterateDumpedPages(this, opts.skipUnreadable ?? true);
  }

  isDumped(pfn: number): boolean {
    return this.find(pfn * PAGE_SIZE) >= 0;
  }

  *dumpedRuns(): Generator<[number, number]> {
    let cs = -1;
    let ce = -1;
    for (const s of this.byAddr) {
      const a = Math.floor(s.start / PAGE_SIZE);
      const b = Math.ceil(s.end / PAGE_SIZE);
      if (cs >= 0 && a <= ce) ce = Math.max(ce, b);
      else {
        if (cs >= 0) yield [cs, ce];
        cs = a;
        ce = b;
      }
    }
    if (cs >= 0) yield [cs, ce];
  }

  /** Split a physical read into file pieces and zero fills (bounds-checked; throws for unmapped bytes). */
  private planRead(addr: number | bigint, off: number, len: number): { pos: number; o: number; n: number; zero: number }[] {
    if (typeof addr === 'bigint') {
      if (addr < 0n || addr > MAX_SAFE) throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `address ${addr} is outside the dump`, { file: this.path });
      addr = Number(addr);
    }
    const plan: { pos: number; o: number; n: number; zero: number }[] = [];
    let a = addr;
    let o = off;
    let left = len;
    while (left > 0) {
      const i = this.find(a);
      if (i < 0) {
        throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `physical address 0x${a.toString(16)} is not in any PT_LOAD`, { file: this.path, address: a, reason: 'not-dumped' });
      }
      const s = this.byAddr[i]!;
      const n = Math.min(left, s.end - a);
      const inFile = Math.max(0, Math.min(n, s.fileEnd - a));
      const pos = s.offset + (a - s.start);
      if (inFile > 0 && pos + inFile > this.src.size) {
        throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `physical address 0x${a.toString(16)}: its data lies past the end of the file (cut short)`, {
          file: this.path,
          address: a,
          reason: 'truncated',
        });
      }
      plan.push({ pos, o, n: inFile, zero: n - inFile });
      a += n;
      o += n;
      left -= n;
    }
    return plan;
  }

  /** The PT_LOAD offsets are offsets of the file itself (not of a flattened file's logical view). */
  get isPlainFile(): boolean {
    return this.src instanceof FileSource;
  }

  readPhys(addr: number | bigint, buf: Uint8Array, off = 0, len = buf.length - off): void {
    for (const p of this.planRead(addr, off, len)) {
      if (p.n > 0 && this.src.readInto(buf, p.o, p.n, p.pos) !== p.n) throw truncated('PT_LOAD data', { file: this.path, offset: p.pos });
      if (p.zero > 0) buf.fill(0, p.o + p.n, p.o + p.n + p.zero);
    }
  }

  /** readPhys off the main thread (for streaming a whole image; falls back to sync reads for flattened files). */
  async readPhysAsync(addr: number | bigint, buf: Uint8Array, off = 0, len = buf.length - off): Promise<void> {
    const src = this.src;
    for (const p of this.planRead(addr, off, len)) {
      if (p.n > 0) {
        const got = src.readIntoAsync ? await src.readIntoAsync(buf, p.o, p.n, p.pos) : src.readInto(buf, p.o, p.n, p.pos);
        if (got !== p.n) throw truncated('PT_LOAD data', { file: this.path, offset: p.pos });
      }
      if (p.zero > 0) buf.fill(0, p.o + p.n, p.o + p.n + p.zero);
    }
  }

  readPage(pfn: number): Buffer {
    const b = Buffer.alloc(PAGE_SIZE);
    this.readPhys(pfn * PAGE_SIZE, b, 0, PAGE_SIZE);
    return b;
  }

  close(): void {
    this.src.close();
  }
}
