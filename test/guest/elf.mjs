// Just enough ELF64 reading for QEMU dump-guest-memory files (test tooling, not product code).
// QEMU 7.2 writes the program headers at e_phoff = 0xc0 (after two section headers at 0x40) and
// sets e_ehsize = 8. We always honour e_phoff and never trust e_ehsize.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/**
 * @typedef {{type: number, offset: number, vaddr: bigint, paddr: number, filesz: number, memsz: number}} Phdr
 * @typedef {{name: string, type: number, desc: Buffer}} Note
 */

/** Read header, program headers and notes. @param {string} file */
export async function readElf(file) {
  const fh = await fsp.open(file, 'r');
  try {
    const h = Buffer.alloc(64);
    await fh.read(h, 0, 64, 0);
    if (h.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file}: not ELF`);
    if (h[4] !== 2 || h[5] !== 1) throw new Error(`${file}: not ELF64 little-endian`);
    const header = {
      type: h.readUInt16LE(0x10),
      machine: h.readUInt16LE(0x12),
      phoff: Number(h.readBigUInt64LE(0x20)),
      shoff: Number(h.readBigUInt64LE(0x28)),
      ehsize: h.readUInt16LE(0x34),
      phentsize: h.readUInt16LE(0x36),
      phnum: h.readUInt16LE(0x38),
      shnum: h.readUInt16LE(0x3c),
    };
    if (header.phentsize !== 56) throw new Error(`${file}: e_phentsize ${header.phentsize}`);
    const pb = Buffer.alloc(header.phnum * 56);
    await fh.read(pb, 0, pb.length, header.phoff);
    /** @type {Phdr[]} */
    const phdrs = [];
    for (let i = 0; i < header.phnum; i++) {
      const o = i * 56;
      phdrs.push({
        type: pb.readUInt32LE(o),
        offset: Number(pb.readBigUInt64LE(o + 8)),
        vaddr: pb.readBigUInt64LE(o + 16),
        paddr: Number(pb.readBigUInt64LE(o + 24)),
        filesz: Number(pb.readBigUInt64LE(o + 32)),
        memsz: Number(pb.readBigUInt64LE(o + 40)),
      });
    }
    /** @type {Note[]} */
    const notes = [];
    for (const p of phdrs.filter((x) => x.type === 4)) {
      const nb = Buffer.alloc(p.filesz);
      await fh.read(nb, 0, nb.length, p.offset);
      let o = 0;
      while (o + 12 <= nb.length) {
        const namesz = nb.readUInt32LE(o);
        const descsz = nb.readUInt32LE(o + 4);
        const type = nb.readUInt32LE(o + 8);
        const nameOff = o + 12;
        const descOff = nameOff + ((namesz + 3) & ~3);
        if (descOff + descsz > nb.length) break;
        notes.push({
          name: nb.subarray(nameOff, nameOff + namesz).toString('latin1').replace(/\0+$/, ''),
          type,
          desc: Buffer.from(nb.subarray(descOff, descOff + descsz)),
        });
        o = descOff + ((descsz + 3) & ~3);
      }
    }
    return { header, phdrs, loads: phdrs.filter((p) => p.type === 1), notes };
  } finally {
    await fh.close();
  }
}

/** One ELF note (4-byte aligned name and desc). */
function encodeNote(name, type, desc) {
  const nameBuf = Buffer.from(name + '\0', 'latin1');
  const pad = (n) => (n + 3) & ~3;
  const b = Buffer.alloc(12 + pad(nameBuf.length) + pad(desc.length));
  b.writeUInt32LE(nameBuf.length, 0);
  b.writeUInt32LE(desc.length, 4);
  b.writeUInt32LE(type, 8);
  nameBuf.copy(b, 12);
  desc.copy(b, 12 + pad(nameBuf.length));
  return b;
}

/**
 * Make a copy of a QEMU 7.2 ELF dump that makedumpfile 1.7.2 can read: makedumpfile reads the
 * program headers right after the 64-byte ELF header (it ignores e_phoff), so move them to 0x40,
 * set e_phoff = 0x40, e_ehsize = 64 and drop the (overwritten) section headers. The copy is sparse.
 *
 * With `vmcoreinfo` (text) and no VMCOREINFO note in the dump, also append a note segment holding
 * the original notes plus a VMCOREINFO note and point the PT_NOTE header at it (makedumpfile uses
 * the last PT_NOTE only), so makedumpfile's kdump output carries VMCOREINFO like a normal vmcore.
 * @param {string} src @param {string} dst @param {{vmcoreinfo?: string}} [opts]
 * @returns {Promise<{patched: boolean, injectedVmcoreinfo: boolean}>}
 */
export async function makeMakedumpfileCompatibleCopy(src, dst, opts = {}) {
  await fsp.rm(dst, { force: true });
  await execFileP('cp', ['--sparse=always', src, dst], { timeout: 900_000 });
  await fsp.chmod(dst, 0o600);
  const fd = fs.openSync(dst, 'r+');
  try {
    const h = Buffer.alloc(64);
    fs.readSync(fd, h, 0, 64, 0);
    const phoff = Number(h.readBigUInt64LE(0x20));
    const phnum = h.readUInt16LE(0x38);
    const ph = Buffer.alloc(phnum * 56);
    fs.readSync(fd, ph, 0, ph.length, phoff);
    let patched = false;
    if (phoff !== 64 || h.readUInt16LE(0x34) !== 64) {
      for (let i = 0; i < phnum; i++) {
        const off = Number(ph.readBigUInt64LE(i * 56 + 8));
        if (ph.readBigUInt64LE(i * 56 + 32) > 0n && off < 64 + ph.length) {
          throw new Error(`${src}: segment ${i} at ${off} would be overwritten by the moved headers`);
        }
      }
      h.writeBigUInt64LE(64n, 0x20); // e_phoff
      h.writeBigUInt64LE(0n, 0x28); // e_shoff
      h.writeUInt16LE(64, 0x34); // e_ehsize
      h.writeUInt16LE(0, 0x3c); // e_shnum
      h.writeUInt16LE(0, 0x3e); // e_shstrndx
      patched = true;
    }
    let injectedVmcoreinfo = false;
    if (opts.vmcoreinfo) {
      const { notes } = await readElf(src);
      const noteIdx = [...Array(phnum).keys()].filter((i) => ph.readUInt32LE(i * 56) === 4).pop();
      if (noteIdx == null) throw new Error(`${src}: no PT_NOTE`);
      if (!notes.some((n) => n.name === 'VMCOREINFO')) {
        const o = noteIdx * 56;
        const oldOff = Number(ph.readBigUInt64LE(o + 8));
        const oldSize = Number(ph.readBigUInt64LE(o + 32));
        const old = Buffer.alloc(oldSize);
        fs.readSync(fd, old, 0, oldSize, oldOff);
        const seg = Buffer.concat([old, encodeNote('VMCOREINFO', 0, Buffer.from(opts.vmcoreinfo, 'latin1'))]);
        const end = fs.fstatSync(fd).size;
        const at = Math.ceil(end / 8) * 8; // not `& ~7`: JS bit operators truncate to 32 bits
        fs.writeSync(fd, seg, 0, seg.length, at);
        ph.writeBigUInt64LE(BigInt(at), o + 8);
        ph.writeBigUInt64LE(BigInt(seg.length), o + 32);
        ph.writeBigUInt64LE(BigInt(seg.length), o + 40);
        injectedVmcoreinfo = true;
      }
    }
    fs.writeSync(fd, ph, 0, ph.length, 64);
    fs.writeSync(fd, h, 0, 64, 0);
    return { patched, injectedVmcoreinfo };
  } finally {
    fs.closeSync(fd);
  }
}
