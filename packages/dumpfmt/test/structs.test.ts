/** Each on-disk struct: decode(encode(x)) = x and encode(decode(bytes)) = bytes. */
import { describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { decodeDiskDumpHeader, encodeDiskDumpHeader, DISK_DUMP_HEADER_SIZE, type DiskDumpHeader } from '../src/kdump/header.js';
import { decodeKdumpSubHeader, encodeKdumpSubHeader, KDUMP_SUB_HEADER_SIZE, type KdumpSubHeader } from '../src/kdump/subheader.js';
import { decodePageDesc, encodePageDesc, PAGE_DESC_SIZE } from '../src/kdump/pagedesc.js';
import { decodeFlatHeader, decodeFlatRecordHeader, encodeFlatHeader, encodeFlatRecordHeader, FLAT_HEADER_SIZE } from '../src/kdump/flat.js';
import { decodeEhdr, decodePhdr, decodeShdr, encodeEhdr, encodePhdr, encodeShdr, elfIdent } from '../src/elf/structs.js';
import { decodePrstatus, encodeNotes, parseNotes, prstatusNote, vmcoreinfoNote, X86_REG_NAMES, PRSTATUS_SIZE } from '../src/index.js';

describe('kdump structs', () => {
  it('disk_dump_header: 464 bytes, fields at the offsets crash and makedumpfile use', () => {
    const h: DiskDumpHeader = {
      signature: 'KDUMP   ',
      headerVersion: 6,
      utsname: { sysname: 'Linux', nodename: 'n', release: '6.1.0-56-amd64', version: '#1 SMP PREEMPT_DYNAMIC', machine: 'x86_64', domainname: '(none)' },
      timestamp: { sec: 1700000000n, usec: 123456n },
      status: 0x9,
      blockSize: 4096,
      subHdrSize: 2,
      bitmapBlocks: 16,
      maxMapnr: 262144,
      totalRamBlocks: 1,
      deviceBlocks: 2,
      writtenBlocks: 3,
      currentCpu: 4,
      nrCpus: 2,
    };
    const b = encodeDiskDumpHeader(h);
    expect(b.length).toBe(DISK_DUMP_HEADER_SIZE);
    expect(b.subarray(0, 8).toString()).toBe('KDUMP   ');
    expect(b.readInt32LE(8)).toBe(6);
    expect(b.subarray(12 + 4 * 65, 12 + 4 * 65 + 6).toString()).toBe('x86_64');
    expect(b.readBigInt64LE(408)).toBe(1700000000n);
    expect(b.readUInt32LE(424)).toBe(0x9);
    expect(b.readInt32LE(428)).toBe(4096);
    expect(b.readUInt32LE(436)).toBe(16);
    expect(b.readInt32LE(460)).toBe(2);
    expect(decodeDiskDumpHeader(b)).toEqual(h);
    expect(encodeDiskDumpHeader(decodeDiskDumpHeader(b)).equals(b)).toBe(true);
    expect(() => decodeDiskDumpHeader(b.subarray(0, 463))).toThrow(expect.objectContaining({ code: 'VCV_ERR_FORMAT_TRUNCATED' }));
  });

  it('kdump_sub_header: 104 bytes; older versions decode only their fields', () => {
    const s: KdumpSubHeader = {
      physBase: 0xfffffffff0000000n,
      dumpLevel: 31,
      split: 0,
      startPfn: 1n,
      endPfn: 2n,
      offsetVmcoreinfo: 4300n,
      sizeVmcoreinfo: 2000n,
      offsetNote: 4200n,
      sizeNote: 3000n,
      offsetEraseinfo: 0n,
      sizeEraseinfo: 0n,
      startPfn64: 3n,
      endPfn64: 4n,
      maxMapnr64: 1n << 40n,
    };
    const b = encodeKdumpSubHeader(s);
    expect(b.length).toBe(KDUMP_SUB_HEADER_SIZE);
    expect(b.readBigUInt64LE(96)).toBe(1n << 40n);
    expect(decodeKdumpSubHeader(b, 6)).toEqual(s);
    expect(encodeKdumpSubHeader(decodeKdumpSubHeader(b, 6)).equals(b)).toBe(true);
    const v3 = decodeKdumpSubHeader(b.subarray(0, 48), 3);
    expect(v3.offsetVmcoreinfo).toBe(4300n);
    expect(v3.sizeNote).toBe(0n);
    expect(() => decodeKdumpSubHeader(b.subarray(0, 100), 6)).toThrow(expect.objectContaining({ code: 'VCV_ERR_FORMAT_TRUNCATED' }));
  });

  it('page_desc: 24 bytes', () => {
    const d = { offset: 2 ** 40 + 12345, size: 1234, flags: 1, pageFlags: 0n };
    const b = encodePageDesc(d);
    expect(b.length).toBe(PAGE_DESC_SIZE);
    expect(b.readBigInt64LE(0)).toBe(BigInt(d.offset));
    expect(decodePageDesc(b)).toEqual(d);
    expect(encodePageDesc(decodePageDesc(b)).equals(b)).toBe(true);
  });

  it('flattened header and record headers (big-endian)', () => {
    const h = encodeFlatHeader();
    expect(h.length).toBe(FLAT_HEADER_SIZE);
    expect(h.subarray(0, 16).toString('latin1')).toBe('makedumpfile\0\0\0\0');
    expect(h.readBigInt64BE(16)).toBe(1n);
    expect(encodeFlatHeader(decodeFlatHeader(h)).equals(h)).toBe(true);
    const r = encodeFlatRecordHeader({ offset: 4096n, size: 100n });
    expect(r.readBigInt64BE(0)).toBe(4096n);
    expect(decodeFlatRecordHeader(r)).toEqual({ offset: 4096n, size: 100n });
    expect(encodeFlatRecordHeader(decodeFlatRecordHeader(r)).equals(r)).toBe(true);
  });
});

describe('ELF structs', () => {
  it('Elf64_Ehdr / Phdr / Shdr round-trip', () => {
    const eh = { ident: elfIdent(), type: 4, machine: 62, version: 1, entry: 0n, phoff: 64n, shoff: 0n, flags: 1, ehsize: 64, phentsize: 56, phnum: 3, shentsize: 0, shnum: 0, shstrndx: 0 };
    const b = encodeEhdr(eh);
    expect(b.length).toBe(64);
    expect(decodeEhdr(b)).toEqual(eh);
    expect(encodeEhdr(decodeEhdr(b)).equals(b)).toBe(true);
    const ph = { type: 1, flags: 7, offset: 8192n, vaddr: 0xffff888000000000n, paddr: 0x100000n, filesz: 4096n, memsz: 8192n, align: 0n };
    const pb = encodePhdr(ph);
    expect(pb.length).toBe(56);
    expect(decodePhdr(pb)).toEqual(ph);
    expect(encodePhdr(decodePhdr(pb)).equals(pb)).toBe(true);
    const sh = { name: 0, type: 0, flags: 0n, addr: 0n, offset: 0n, size: 0n, link: 0, info: 70000, addralign: 0n, entsize: 0n };
    const sb = encodeShdr(sh);
    expect(decodeShdr(sb)).toEqual(sh);
    expect(encodeShdr(decodeShdr(sb)).equals(sb)).toBe(true);
  });
});

describe('ELF notes', () => {
  it('encode/parse round-trip with 4-byte alignment', () => {
    const notes = [
      { name: 'CORE', type: 1, desc: Buffer.from([1, 2, 3]) },
      { name: 'VMCOREINFO', type: 0, desc: Buffer.from('OSRELEASE=6.1\n') },
      { name: 'X', type: 7, desc: Buffer.alloc(0) },
    ];
    const b = encodeNotes(notes);
    expect(b.length % 4).toBe(0);
    expect(b.readUInt32LE(0)).toBe(5); // "CORE\0"
    expect(b.readUInt32LE(4)).toBe(3);
    expect(parseNotes(b)).toEqual(notes);
    expect(encodeNotes(parseNotes(b)).equals(b)).toBe(true);
    // trailing zero padding is fine
    expect(parseNotes(Buffer.concat([b, Buffer.alloc(16)]))).toEqual(notes);
    // a note claiming more than there is
    const bad = Buffer.from(b);
    bad.writeUInt32LE(1000, 4);
    let err: unknown;
    try {
      parseNotes(bad);
    } catch (e) {
      err = e;
    }
    expect(isVcvError(err, 'VCV_ERR_FORMAT_TRUNCATED')).toBe(true);
  });

  it('NT_PRSTATUS is the 336-byte x86-64 elf_prstatus with pr_reg in kernel order', () => {
    const regs = Object.fromEntries(X86_REG_NAMES.map((n, i) => [n, BigInt(i + 1) * 0x1111n]));
    const n = prstatusNote(3, regs, 77);
    expect(n.name).toBe('CORE');
    expect(n.type).toBe(1);
    expect(n.desc.length).toBe(PRSTATUS_SIZE);
    expect(n.desc.readInt32LE(32)).toBe(77);
    expect(n.desc.readBigUInt64LE(112)).toBe(0x1111n); // r15
    expect(n.desc.readBigUInt64LE(112 + 16 * 8)).toBe(17n * 0x1111n); // rip
    const d = decodePrstatus(n.desc);
    expect(d.pid).toBe(77);
    expect(d.regs).toEqual(regs);
    expect(prstatusNote(0, {}).desc.readInt32LE(32)).toBe(1);
    expect(vmcoreinfoNote('A=1\n')).toEqual({ name: 'VMCOREINFO', type: 0, desc: Buffer.from('A=1\n') });
    expect(() => decodePrstatus(Buffer.alloc(100))).toThrow(expect.objectContaining({ code: 'VCV_ERR_FORMAT_TRUNCATED' }));
  });
});
