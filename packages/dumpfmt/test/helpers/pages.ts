/** Deterministic page contents for tests: zero, text-like, random, repeated patterns. */
import { randomBytes } from 'node:crypto';

export const PS = 4096;

/** A small seeded PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = 'the quick brown fox jumps over lazy dog kernel page struct memory alloc free list node zone task mm vma inode dentry'.split(' ');

export type PageKind = 'zero' | 'text' | 'random' | 'pattern' | 'sparse';

export function fillPage(buf: Buffer, off: number, kind: PageKind, r: () => number): void {
  switch (kind) {
    case 'zero':
      buf.fill(0, off, off + PS);
      return;
    case 'random':
      for (let i = 0; i < PS; i += 4) buf.writeUInt32LE((r() * 2 ** 32) >>> 0, off + i);
      return;
    case 'text': {
      let p = off;
      while (p < off + PS) {
        const w = WORDS[Math.floor(r() * WORDS.length)]! + (r() < 0.1 ? '\n' : ' ');
        p += buf.write(w, p, Math.min(w.length, off + PS - p), 'latin1');
      }
      return;
    }
    case 'pattern': {
      const v = Math.floor(r() * 256);
      for (let i = 0; i < PS; i++) buf[off + i] = (v + (i % 13)) & 0xff;
      return;
    }
    case 'sparse':
      buf.fill(0, off, off + PS);
      for (let k = 0; k < 8; k++) buf.writeUInt32LE((r() * 2 ** 32) >>> 0, off + Math.floor(r() * (PS / 4)) * 4);
      return;
  }
}

/** `n` pages of mixed content. Mix = weights for zero/text/random/pattern/sparse. */
export function makeImage(n: number, seed = 1, mix: Partial<Record<PageKind, number>> = { zero: 2, text: 3, random: 2, pattern: 1, sparse: 1 }): Buffer {
  const r = rng(seed);
  const kinds = Object.entries(mix) as [PageKind, number][];
  const total = kinds.reduce((a, [, w]) => a + w, 0);
  const buf = Buffer.alloc(n * PS);
  for (let p = 0; p < n; p++) {
    let x = r() * total;
    let kind: PageKind = 'zero';
    for (const [k, w] of kinds) {
      if ((x -= w) < 0) {
        kind = k;
        break;
      }
    }
    fillPage(buf, p * PS, kind, r);
  }
  return buf;
}

export { randomBytes };
