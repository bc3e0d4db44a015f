/**
 * ELF notes as carried in a vmcore's PT_NOTE and in the kdump sub-header region: per-CPU NT_PRSTATUS
 * (x86-64 `struct elf_prstatus`) and the kernel's VMCOREINFO text.
 *
 * Note layout (Elf64_Nhdr is the same as Elf32_Nhdr): u32 namesz (incl. NUL), u32 descsz, u32 type,
 * name padded to 4 bytes, desc padded to 4 bytes.
 */
import { BinReader, BinWriter, pad4 } from './binary.js';
import { invalid, truncated } from './errors.js';

export interface ElfNote {
  name: string;
  type: number;
  desc: Buffer;
}

export const NT_PRSTATUS = 1;
/** The VMCOREINFO note's type (the kernel uses 0). */
export const NT_VMCOREINFO = 0;
export const VMCOREINFO_NOTE_NAME = 'VMCOREINFO';
/** sizeof(struct elf_prstatus) on x86-64. */
export const PRSTATUS_SIZE = 336;
/** Offset of pr_reg inside struct elf_prstatus on x86-64. */
export const PRSTATUS_REG_OFFSET = 112;

/** `user_regs_struct` in kernel order: pr_reg[0..26]. */
export const X86_REG_NAMES = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export type X86RegName = (typeof X86_REG_NAMES)[number];
/** x86-64 general registers; missing ones are written as 0. */
export type X86Regs = Partial<Record<X86RegName, bigint>>;

/** Hard cap on a notes blob we parse (the kernel's are a few KiB per CPU). */
export const MAX_NOTES_SIZE = 64 * 1024 * 1024;

export function encodeNotes(notes: readonly ElfNote[]): Buffer {
  let size = 0;
  for (const n of notes) size += 12 + pad4(Buffer.byteLength(n.name) + 1) + pad4(n.desc.length);
  const w = new BinWriter(size);
  let off = 0;
  for (const n of notes) {
    const nameLen = Buffer.byteLength(n.name) + 1;
    w.u32(off, nameLen).u32(off + 4, n.desc.length).u32(off + 8, n.type >>> 0);
    off += 12;
    w.buf.write(n.name, off, 'utf8');
    off += pad4(nameLen);
    w.bytes(off, n.desc);
    off += pad4(n.desc.length);
  }
  return w.buf;
}

/**
 * Parse a notes blob. Bounds-checked: a note whose name or desc runs past the end gives
 * VCV_ERR_FORMAT_TRUNCATED. Trailing bytes shorter than a note header (padding) are ignored, and so is
 * an all-zero trailing header (some writers pad the region with zeros).
 * `base` is the blob's file offset, for error details.
 */
export function parseNotes(buf: Buffer, base = 0, file?: string): ElfNote[] {
  if (buf.length > MAX_NOTES_SIZE) throw invalid(`notes blob of ${buf.length} bytes is larger than ${MAX_NOTES_SIZE}`, { offset: base });
  const r = new BinReader(buf, 'ELF note', base, file);
  const out: ElfNote[] = [];
  let off = 0;
  while (off + 12 <= buf.length) {
    const namesz = r.u32(off);
    const descsz = r.u32(off + 4);
    const type = r.u32(off + 8);
    if (namesz === 0 && descsz === 0 && type === 0) break; // zero padding
    const nameOff = off + 12;
    const descOff = nameOff + pad4(namesz);
    if (namesz > buf.length || descsz > buf.length || descOff + descsz > buf.length) {
      throw truncated('ELF note', { offset: base + off, namesz, descsz, ...(file ? { file } : {}) });
    }
    const nameBytes = buf.subarray(nameOff, nameOff + namesz);
    const nul = nameBytes.indexOf(0);
    const name = nameBytes.subarray(0, nul < 0 ? namesz : nul).toString('utf8');
    out.push({ name, type, desc: Buffer.from(buf.subarray(descOff, descOff + descsz)) });
    off = descOff + pad4(descsz);
  }
  return out;
}

/**
 * Like parseNotes, but a damaged note ends the list instead of failing: returns the notes before it
 * and the error (for readers that keep going and report a warning).
 */
export function parseNotesLenient(buf: Buffer, base = 0, file?: string): { notes: ElfNote[]; error?: Error } {
  try {
    return { notes: parseNotes(buf, base, file) };
  } catch (e) {
    // parse again up to the failing offset
    const at = ((e as { details?: { offset?: number } }).details?.offset ?? base) - base;
    let notes: ElfNote[] = [];
    try {
      notes = at > 0 ? parseNotes(buf.subarray(0, at), base, file) : [];
    } catch {
      notes = [];
    }
    return { notes, error: e as Error };
  }
}

export function vmcoreinfoNote(text: string): ElfNote {
  return { name: VMCOREINFO_NOTE_NAME, type: NT_VMCOREINFO, desc: Buffer.from(text, 'utf8') };
}

/** The VMCOREINFO text of the first note named VMCOREINFO, without trailing NULs; undefined if none. */
export function findVmcoreinfo(notes: readonly ElfNote[]): string | undefined {
  const n = notes.find((x) => x.name === VMCOREINFO_NOTE_NAME);
  if (!n) return undefined;
  let end = n.desc.length;
  while (end > 0 && n.desc[end - 1] === 0) end--;
  return n.desc.subarray(0, end).toString('utf8');
}

/**
 * An x86-64 NT_PRSTATUS note (name "CORE", 336-byte `struct elf_prstatus`). `pid` defaults to cpu + 1,
 * as QEMU writes it; the note carries no CPU number of its own, notes are in CPU order.
 */
export function prstatusNote(cpu: number, regs: X86Regs, pid: number = cpu + 1): ElfNote {
  const w = new BinWriter(PRSTATUS_SIZE);
  w.i32(32, pid); // pr_pid
  X86_REG_NAMES.forEach((name, i) => w.u64(PRSTATUS_REG_OFFSET + 8 * i, regs[name] ?? 0n));
  return { name: 'CORE', type: NT_PRSTATUS, desc: w.buf };
}

export interface Prstatus {
  /** pr_info.si_signo */
  signo: number;
  cursig: number;
  pid: number;
  ppid: number;
  regs: Record<X86RegName, bigint>;
}

/** Decode an x86-64 `struct elf_prstatus`. A desc shorter than 328 bytes gives VCV_ERR_FORMAT_TRUNCATED. */
export function decodePrstatus(desc: Buffer): Prstatus {
  const r = new BinReader(desc, 'NT_PRSTATUS note');
  r.need(0, PRSTATUS_REG_OFFSET + 8 * X86_REG_NAMES.length);
  const regs = {} as Record<X86RegName, bigint>;
  X86_REG_NAMES.forEach((name, i) => (regs[name] = r.u64(PRSTATUS_REG_OFFSET + 8 * i)));
  return { signo: r.i32(0), cursig: desc.readInt16LE(12), pid: r.i32(32), ppid: r.i32(36), regs };
}
