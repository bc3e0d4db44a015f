/**
 * The native page packer (native/pack.c): the same contract as the compression worker's JavaScript
 * loop — zero pages found, zlib streams that inflate to the page and are smaller than it, raw pages
 * otherwise — and bounds checked before anything is touched.
 */
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createCompressor, ZLIB_LEVEL } from '../src/codec/index.js';
import { nativePacker } from '../src/native-pack.js';
import { isZeroPage } from '../src/kdump/pack.js';
import { makeImage, PS } from './helpers/pages.js';

it('the packer is built (npm run build) where the tools are required', () => {
  if (process.env.VICOVER_REQUIRE_TOOLS === '1') expect(nativePacker(), 'packages/dumpfmt/native/build/vicover-pack.node').not.toBeNull();
});

describe.skipIf(nativePacker() === null)('native page packer', () => {
  const packer = nativePacker()!;
  const N = 600;
  const image = makeImage(N, 7); // zero, text, random, pattern and sparse pages

  it('packs like the JavaScript loop: zero pages, streams that inflate to the page, raw pages', () => {
    const dst = Buffer.alloc(N * PS);
    const sizes = new Int32Array(N);
    // from an offset: pages 100..599
    const used = packer.packPages(image, 100 * PS, N - 100, PS, dst, sizes, true, ZLIB_LEVEL);
    const js = createCompressor('zlib')!;
    const scratch = Buffer.alloc(PS);
    let at = 0;
    const kinds = { zero: 0, compressed: 0, raw: 0 };
    for (let i = 0; i < N - 100; i++) {
      const page = image.subarray((100 + i) * PS, (101 + i) * PS);
      const s = sizes[i]!;
      if (s === 0) {
        expect(isZeroPage(image, (100 + i) * PS, PS)).toBe(true);
        kinds.zero++;
      } else if (s > 0) {
        expect(s).toBeLessThan(PS);
        expect(inflateSync(dst.subarray(at, at + s)).equals(page)).toBe(true);
        // the JavaScript codec compresses this page too (same level and window)
        expect(js.compress(page, 0, PS, scratch, 0)).toBeGreaterThan(0);
        at += s;
        kinds.compressed++;
      } else {
        expect(s).toBe(-PS);
        expect(dst.subarray(at, at + PS).equals(page)).toBe(true);
        expect(js.compress(page, 0, PS, scratch, 0)).toBe(-1);
        at += PS;
        kinds.raw++;
      }
    }
    expect(used).toBe(at);
    expect(kinds.zero).toBeGreaterThan(0);
    expect(kinds.compressed).toBeGreaterThan(0);
    expect(kinds.raw).toBeGreaterThan(0);
  });

  it('keeps zero pages when asked (compressed like any other page)', () => {
    const zero = Buffer.alloc(4 * PS);
    const sizes = new Int32Array(4);
    const dst = Buffer.alloc(4 * PS);
    const used = packer.packPages(zero, 0, 4, PS, dst, sizes, false, ZLIB_LEVEL);
    expect([...sizes].every((s) => s > 0 && s < 64)).toBe(true);
    expect(inflateSync(dst.subarray(0, sizes[0]!)).equals(Buffer.alloc(PS))).toBe(true);
    expect(used).toBe(sizes.reduce((a, b) => a + b, 0));
  });

  it('reads pages from shared memory', () => {
    const shared = Buffer.from(new SharedArrayBuffer(8 * PS));
    image.copy(shared, 0, 0, 8 * PS);
    const a = new Int32Array(8);
    const b = new Int32Array(8);
    const da = Buffer.alloc(8 * PS);
    const db = Buffer.alloc(8 * PS);
    expect(packer.packPages(shared, 0, 8, PS, da, a, true, ZLIB_LEVEL)).toBe(packer.packPages(image, 0, 8, PS, db, b, true, ZLIB_LEVEL));
    expect([...a]).toEqual([...b]);
    expect(da.equals(db)).toBe(true);
  });

  it('refuses counts its buffers cannot hold, before touching them', () => {
    const src = Buffer.alloc(4 * PS, 7);
    const dst = Buffer.alloc(4 * PS);
    const sizes = new Int32Array(4);
    expect(() => packer.packPages(src, PS, 4, PS, dst, sizes, true, 1)).toThrow(/src is too short/);
    expect(() => packer.packPages(src, 0, 4, PS, dst.subarray(0, 3 * PS), sizes, true, 1)).toThrow(/dst is too short/);
    expect(() => packer.packPages(src, 0, 4, PS, dst, new Int32Array(3), true, 1)).toThrow(/sizes is too short/);
    expect(() => packer.packPages(src, 0, 1, 100, dst, sizes, true, 1)).toThrow(/page size/);
    expect(() => packer.packPages(src, -PS, 1, PS, dst, sizes, true, 1)).toThrow(/negative/);
    expect(() => packer.packPages(src, 0, 1, PS, dst, sizes, true, 12)).toThrow(/level/);
    expect(() => packer.packPages(src, 0, 1, PS, dst, new Uint32Array(4) as unknown as Int32Array, true, 1)).toThrow(/Int32Array/);
    expect(sizes.every((s) => s === 0)).toBe(true);
    expect(dst.every((b) => b === 0)).toBe(true);
  });
});
