// Test oracle: the guest's VMCOREINFO text, found independently of the product code.
//  - fromElf: the ELF note named "VMCOREINFO" in QEMU's dump (present with -device vmcoreinfo)
//  - fromRam: scan the raw RAM file for the text block that starts with "OSRELEASE=" (the kernel
//    keeps it twice: in vmcoreinfo_data and in the vmcoreinfo_note page) and ends at a NUL.

import fsp from 'node:fs/promises';
import { readElf } from './elf.mjs';

const MARK = Buffer.from('OSRELEASE=');
const MAX_LEN = 8192; // VMCOREINFO_BYTES is one page; leave slack

/** @param {string} elfFile @returns {Promise<string|null>} */
export async function vmcoreinfoFromElf(elfFile) {
  const { notes } = await readElf(elfFile);
  const n = notes.find((x) => x.name === 'VMCOREINFO');
  if (!n) return null;
  const text = n.desc.toString('latin1');
  const nul = text.indexOf('\0');
  return nul >= 0 ? text.slice(0, nul) : text;
}

/** A plausible VMCOREINFO block: KEY=value lines including the keys every kernel writes. */
function plausible(text) {
  if (!text.endsWith('\n')) return false;
  const lines = text.slice(0, -1).split('\n');
  return (
    lines.length > 20 &&
    lines.every((l) => /^[A-Za-z0-9_()."\-]+=\S*$/.test(l)) &&
    text.includes('\nPAGESIZE=') &&
    text.includes('\nSYMBOL(')
  );
}

/**
 * @param {string} ramFile
 * @returns {Promise<{text: string|null, copies: {offset: number, length: number}[], distinct: number}>}
 */
export async function vmcoreinfoFromRam(ramFile) {
  const fh = await fsp.open(ramFile, 'r');
  const chunk = 64 << 20;
  const buf = Buffer.alloc(chunk + MAX_LEN);
  /** @type {Map<string, number[]>} */
  const found = new Map();
  try {
    const { size } = await fh.stat();
    for (let pos = 0; pos < size; pos += chunk) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      const view = buf.subarray(0, bytesRead);
      let i = 0;
      while ((i = view.indexOf(MARK, i)) >= 0 && i < chunk) {
        const end = view.indexOf(0, i);
        if (end > i && end - i <= MAX_LEN) {
          const text = view.subarray(i, end).toString('latin1');
          if (plausible(text)) found.set(text, [...(found.get(text) ?? []), pos + i]);
        }
        i += MARK.length;
      }
    }
  } finally {
    await fh.close();
  }
  let best = null;
  for (const t of found.keys()) if (!best || found.get(t).length > found.get(best).length || (found.get(t).length === found.get(best).length && t.length > best.length)) best = t;
  const copies = [...found.entries()].flatMap(([t, offs]) => offs.map((offset) => ({ offset, length: t.length })));
  return { text: best, copies, distinct: found.size };
}

/** Parse KEY=value lines into an object. @param {string} text */
export function parseVmcoreinfo(text) {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}
