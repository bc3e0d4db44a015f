import { describe, expect, it } from 'vitest';
import { createCompressor, decompressPage, type Compression } from '../src/codec/index.js';
import { lzoDecompress } from '../src/codec/lzo.js';
import { snappyDecompress } from '../src/codec/snappy.js';
import { cDecompress } from './helpers/oracle.js';
import { fillPage, makeImage, PS, rng, type PageKind } from './helpers/pages.js';
import { isVcvError } from '@vicover/errors';

const CODECS: Compression[] = ['zlib', 'lzo', 'snappy'];

function pagesOfEveryKind(): Buffer {
  const kinds: PageKind[] = ['zero', 'text', 'random', 'pattern', 'sparse'];
  const r = rng(7);
  const buf = Buffer.alloc(kinds.length * 8 * PS);
  let p = 0;
  for (let rep = 0; rep < 8; rep++) for (const k of kinds) fillPage(buf, PS * p++, k, r);
  // edge cases: a page of one repeated byte, a page with a single non-zero byte at the end,
  // half random / half zero, and a page that is all 0xff
  buf.fill(0x41, 0, PS);
  buf.fill(0, PS, 2 * PS);
  buf[2 * PS - 1] = 1;
  buf.fill(0xff, 3 * PS, 4 * PS);
  return Buffer.concat([buf, makeImage(64, 3)]);
}

describe.each(CODECS)('%s page codec', (codec) => {
  const img = pagesOfEveryKind();
  const n = img.length / PS;
  const c = createCompressor(codec)!;
  const dst = Buffer.alloc(PS);
  const stored: { size: number; data: Buffer }[] = [];
  for (let i = 0; i < n; i++) {
    const size = c.compress(img, i * PS, PS, dst, 0);
    stored.push({ size, data: Buffer.from(dst.subarray(0, Math.max(size, 0))) });
  }

  it('compresses compressible pages and refuses incompressible ones', () => {
    for (let i = 0; i < n; i++) {
      const s = stored[i]!.size;
      expect(s === -1 || (s > 0 && s < PS)).toBe(true);
    }
    // a zero page always compresses, a random page never does
    const z = Buffer.alloc(PS);
    expect(c.compress(z, 0, PS, dst, 0)).toBeGreaterThan(0);
    expect(c.compress(z, 0, PS, dst, 0)).toBeLessThan(200);
    const r = Buffer.alloc(PS);
    fillPage(r, 0, 'random', rng(99));
    expect(c.compress(r, 0, PS, dst, 0)).toBe(-1);
  });

  it('round-trips through our decoder', () => {
    for (let i = 0; i < n; i++) {
      const { size, data } = stored[i]!;
      if (size < 0) continue;
      const out = decompressPage(codec === 'zlib' ? 1 : codec === 'lzo' ? 2 : 4, data, PS);
      expect(out.equals(img.subarray(i * PS, (i + 1) * PS))).toBe(true);
    }
  });

  it('is decoded identically by the C library (zlib uncompress / lzo1x_decompress_safe / snappy_uncompress)', () => {
    const flag = codec === 'zlib' ? 1 : codec === 'lzo' ? 2 : 4;
    const items: { codec: number; data: Buffer }[] = [];
    const idx: number[] = [];
    stored.forEach((s, i) => {
      if (s.size > 0) {
        items.push({ codec: flag, data: s.data });
        idx.push(i);
      }
    });
    expect(items.length).toBeGreaterThan(n / 2);
    const out = cDecompress(items);
    expect(out.length).toBe(items.length * PS);
    idx.forEach((p, k) => {
      expect(out.subarray(k * PS, (k + 1) * PS).equals(img.subarray(p * PS, (p + 1) * PS)), `page ${p}`).toBe(true);
    });
  });

  it('never throws anything but PAGE_CORRUPT on damaged data (fuzz)', () => {
    const flag = codec === 'zlib' ? 1 : codec === 'lzo' ? 2 : 4;
    const r = rng(1234);
    const samples = stored.filter((s) => s.size > 0);
    for (let k = 0; k < 3000; k++) {
      const base = samples[k % samples.length]!.data;
      const d = Buffer.from(base);
      const mode = k % 3;
      let input: Buffer = d;
      if (mode === 0) d[Math.floor(r() * d.length)] ^= 1 << Math.floor(r() * 8);
      else if (mode === 1) input = d.subarray(0, Math.floor(r() * d.length));
      else for (let j = 0; j < 4; j++) d[Math.floor(r() * d.length)] = Math.floor(r() * 256);
      try {
        const out = decompressPage(flag, input, PS);
        expect(out.length).toBe(PS);
      } catch (e) {
        expect(isVcvError(e, 'VCV_ERR_PAGE_CORRUPT'), String(e)).toBe(true);
      }
    }
  });
});

describe('decoders on hand-made streams', () => {
  it('lzo: rejects a stream without the end marker and accepts a minimal literal stream', () => {
    const page = Buffer.alloc(PS);
    // 17+t literal-run form cannot hold 4096 bytes; use our compressor on a short input instead
    const c = createCompressor('lzo')!;
    const out = Buffer.alloc(PS);
    const n = c.compress(Buffer.alloc(PS, 7), 0, PS, out, 0);
    expect(lzoDecompress(out.subarray(0, n), page, PS)).toBe(true);
    expect(page.every((b) => b === 7)).toBe(true);
    expect(lzoDecompress(out.subarray(0, n - 3), page, PS)).toBe(false);
    expect(lzoDecompress(Buffer.alloc(0), page, PS)).toBe(false);
  });
  it('snappy: the length preamble must match the page size', () => {
    const page = Buffer.alloc(PS);
    expect(snappyDecompress(Buffer.from([0x04, 0x0c, 1, 2, 3, 4]), page, 4)).toBe(true);
    expect(page.subarray(0, 4)).toEqual(Buffer.from([1, 2, 3, 4]));
    expect(snappyDecompress(Buffer.from([0x04, 0x0c, 1, 2, 3, 4]), page, PS)).toBe(false);
    // copy with offset beyond the output
    expect(snappyDecompress(Buffer.from([0x08, 0x00, 1, 0x0d, 0x05]), page, 8)).toBe(false);
  });
});
