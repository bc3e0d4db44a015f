/**
 * ELF64 little-endian structures used by vmcores: Elf64_Ehdr (64 B), Elf64_Phdr (56 B), Elf64_Shdr
 * (64 B; only section 0 matters here, for PN_XNUM). Addresses are bigint; file offsets and sizes are
 * bigint too in the structs — the reader converts them after checking them against the file size.
 */
import { BinReader, BinWriter } from '../binary.js';

export const ELFMAG = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const ET_CORE = 4;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
export const PN_XNUM = 0xffff;
export const EHDR_SIZE = 64;
export const PHDR_SIZE = 56;
export const SHDR_SIZE = 64;
/** makedumpfile's DUMP_ELF_INCOMPLETE, in e_flags. */
export const ELF_DUMP_INCOMPLETE = 0x1;

export interface Elf64Ehdr {
  ident: Buffer; // 16 bytes
  type: number;
  machine: number;
  version: number;
  entry: bigint;
  phoff: bigint;
  shoff: bigint;
  flags: number;
  ehsize: number;
  phentsize: number;
  phnum: number;
  shentsize: number;
  shnum: number;
  shstrndx: number;
}

export function elfIdent(): Buffer {
  const id = Buffer.alloc(16);
  ELFMAG.copy(id);
  id[4] = ELFCLASS64;
  id[5] = ELFDATA2LSB;
  id[6] = EV_CURRENT;
  return id;
}

export function encodeEhdr(h: Elf64Ehdr): Buffer {
  const w = new BinWriter(EHDR_SIZE);
  w.bytes(0, h.ident.subarray(0, 16));
  w.u16(16, h.type).u16(18, h.machine).u32(20, h.version).u64(24, h.entry).u64(32, h.phoff).u64(40, h.shoff);
  w.u32(48, h.flags).u16(52, h.ehsize).u16(54, h.phentsize).u16(56, h.phnum).u16(58, h.shentsize).u16(60, h.shnum).u16(62, h.shstrndx);
  return w.buf;
}

export function decodeEhdr(buf: Buffer, file?: string): Elf64Ehdr {
  const r = new BinReader(buf, 'ELF header', 0, file);
  r.need(0, EHDR_SIZE);
  return {
    ident: Buffer.from(r.bytes(0, 16)),
    type: r.u16(16),
    machine: r.u16(18),
    version: r.u32(20),
    entry: r.u64(24),
    phoff: r.u64(32),
    shoff: r.u64(40),
    flags: r.u32(48),
    ehsize: r.u16(52),
    phentsize: r.u16(54),
    phnum: r.u16(56),
    shentsize: r.u16(58),
    shnum: r.u16(60),
    shstrndx: r.u16(62),
  };
}

export interface Elf64Phdr {
  type: number;
  flags: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  align: bigint;
}

export function writePhdr(buf: Buffer, at: number, p: Elf64Phdr): void {
  buf.writeUInt32LE(p.type >>> 0, at);
  buf.writeUInt32LE(p.flags >>> 0, at + 4);
  buf.writeBigUInt64LE(p.offset, at + 8);
  buf.writeBigUInt64LE(p.vaddr, at + 16);
  buf.writeBigUInt64LE(p.paddr, at + 24);
  buf.writeBigUInt64LE(p.filesz, at + 32);
  buf.writeBigUInt64LE(p.memsz, at + 40);
  buf.writeBigUInt64LE(p.align, at + 48);
}

export function encodePhdr(p: Elf64Phdr): Buffer {
  const b = Buffer.alloc(PHDR_SIZE);
  writePhdr(b, 0, p);
  return b;
}

export function decodePhdr(buf: Buffer, at = 0, base = 0, file?: string): Elf64Phdr {
  const r = new BinReader(buf, 'ELF program header', base, file);
  r.need(at, PHDR_SIZE);
  return {
    type: r.u32(at),
    flags: r.u32(at + 4),
    offset: r.u64(at + 8),
    vaddr: r.u64(at + 16),
    paddr: r.u64(at + 24),
    filesz: r.u64(at + 32),
    memsz: r.u64(at + 40),
    align: r.u64(at + 48),
  };
}

export interface Elf64Shdr {
  name: number;
  type: number;
  flags: bigint;
  addr: bigint;
  offset: bigint;
  size: bigint;
  link: number;
  info: number;
  addralign: bigint;
  entsize: bigint;
}

export function encodeShdr(s: Elf64Shdr): Buffer {
  const w = new BinWriter(SHDR_SIZE);
  w.u32(0, s.name).u32(4, s.type).u64(8, s.flags).u64(16, s.addr).u64(24, s.offset).u64(32, s.size);
  w.u32(40, s.link).u32(44, s.info).u64(48, s.addralign).u64(56, s.entsize);
  return w.buf;
}

export function decodeShdr(buf: Buffer, at = 0, base = 0, file?: string): Elf64Shdr {
  const r = new BinReader(buf, 'ELF section header', base, file);
  r.need(at, SHDR_SIZE);
  return {
    name: r.u32(at),
    type: r.u32(at + 4),
    flags: r.u64(at + 8),
    addr: r.u64(at + 16),
    offset: r.u64(at + 24),
    size: r.u64(at + 32),
    link: r.u32(at + 40),
    info: r.u32(at + 44),
    addralign: r.u64(at + 48),
    entsize: r.u64(at + 56),
  };
}
