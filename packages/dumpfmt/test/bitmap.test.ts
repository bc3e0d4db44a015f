import { describe, expect, it } from 'vitest';
import { Bitmap, RankIndex, popcount32 } from '../src/index.js';
import { rng } from './helpers/pages.js';

/** A naive reference: one boolean per bit. */
function naive(bm: Bitmap): boolean[] {
  const a: boolean[] = [];
  for (let i = 0; i < bm.size; i++) a.push(((bm.bytes[i >> 3]! >> (i & 7)) & 1) === 1);
  return a;
}

function randomBitmap(n: number, seed: number): Bitmap {
  const r = rng(seed);
  const bm = new Bitmap(n);
  let p = 0;
  while (p < n) {
    const len = Math.floor(r() * 70);
    if (r() < 0.5) bm.setRange(p, Math.min(n, p + len));
    p += len + 1;
  }
  for (let k = 0; k < n / 10; k++) bm.set(Math.floor(r() * n));
  return bm;
}

describe('Bitmap', () => {
  it('uses kdump bit order: bit n of byte k is pfn 8k+n', () => {
    const bm = new Bitmap(20).set(0).set(9).set(19);
    expect([...bm.bytes]).toEqual([0b1, 0b10, 0b1000]);
    const b2 = Bitmap.from(Uint8Array.from([0x80, 0x01]), 16);
    expect(b2.get(7)).toBe(true);
    expect(b2.get(8)).toBe(true);
    expect(b2.count()).toBe(2);
  });

  it('from() masks bits past nbits', () => {
    const b = Bitmap.from(Uint8Array.from([0xff, 0xff]), 11);
    expect(b.count()).toBe(11);
    expect(b.nextClear(0)).toBe(11);
    expect(b.bytes.length).toBe(2);
    expect(b.bytes[1]).toBe(0b111);
  });

  it.each([1, 31, 32, 33, 1000, 4097, 65536 + 7])('agrees with a naive bitmap (n=%i)', (n) => {
    for (let seed = 1; seed <= 5; seed++) {
      const bm = randomBitmap(n, seed * n);
      const ref = naive(bm);
      const prefix = [0];
      for (const x of ref) prefix.push(prefix[prefix.length - 1]! + (x ? 1 : 0));
      const r = rng(seed);
      for (let k = 0; k < 200; k++) {
        const a = Math.floor(r() * (n + 1));
        const b = a + Math.floor(r() * (n + 1 - a));
        expect(bm.count(a, b)).toBe(prefix[b]! - prefix[a]!);
        const ns = ref.indexOf(true, a);
        expect(bm.nextSet(a)).toBe(ns);
        const nc = ref.indexOf(false, a);
        expect(bm.nextClear(a)).toBe(nc < 0 ? n : nc);
      }
      const runs: [number, number][] = [];
      for (let i = 0; i < n; ) {
        if (!ref[i]) {
          i++;
          continue;
        }
        let j = i;
        while (j < n && ref[j]) j++;
        runs.push([i, j]);
        i = j;
      }
      expect([...bm.runs()]).toEqual(runs);
      const a = Math.floor(n / 3);
      const b = Math.floor((2 * n) / 3);
      expect([...bm.runs(a, b)]).toEqual(runs.filter(([s, e]) => e > a && s < b).map(([s, e]) => [Math.max(s, a), Math.min(e, b)]));
      const rank = new RankIndex(bm);
      for (let k = 0; k <= n; k += Math.max(1, Math.floor(n / 97))) expect(rank.rank(k)).toBe(prefix[k]!);
      expect(rank.total).toBe(bm.count());
    }
  });

  it('setRange/clearRange/and/andNot/or match the naive version', () => {
    const n = 3000;
    const a = randomBitmap(n, 1);
    const b = randomBitmap(n, 2);
    const ra = naive(a);
    const rb = naive(b);
    expect(naive(a.clone().and(b))).toEqual(ra.map((x, i) => x && rb[i]!));
    expect(naive(a.clone().andNot(b))).toEqual(ra.map((x, i) => x && !rb[i]!));
    expect(naive(a.clone().or(b))).toEqual(ra.map((x, i) => x || rb[i]!));
    const c = a.clone().setRange(100, 2100).clearRange(1000, 1033);
    const rc = ra.map((x, i) => (i >= 1000 && i < 1033 ? false : i >= 100 && i < 2100 ? true : x));
    expect(naive(c)).toEqual(rc);
    expect(a.clone().and(b).isSubsetOf(a)).toBe(true);
    expect(a.equals(a.clone())).toBe(true);
    expect(() => a.and(new Bitmap(5))).toThrow(RangeError);
    expect(() => a.set(n)).toThrow(RangeError);
    expect(a.get(n)).toBe(false);
  });

  it('popcount32', () => {
    expect(popcount32(0)).toBe(0);
    expect(popcount32(0xffffffff)).toBe(32);
    expect(popcount32(0x80000001)).toBe(2);
  });

  it('handles a 1 TiB guest (2^28 pfns, 32 MiB) word-at-a-time', () => {
    const n = 2 ** 28;
    const bm = new Bitmap(n);
    bm.setRange(5, n - 5);
    bm.clearRange(2 ** 27, 2 ** 27 + 12345);
    expect(bm.count()).toBe(n - 10 - 12345);
    let runs = 0;
    for (const _ of bm.runs()) runs++;
    expect(runs).toBe(2);
    const rank = new RankIndex(bm);
    expect(rank.rank(n - 1)).toBe(n - 10 - 12345);
  });
});
