import { describe, expect, it } from 'vitest';
import { TokenBucket } from '@vicover/core';

describe('token bucket (injected clock: no timing assertions)', () => {
  it('is free when unlimited', async () => {
    const b = new TokenBucket(Infinity);
    await b.take(1e12);
    expect(b.taken).toBe(1e12);
  });

  it('makes a writer wait for the tokens it spends, at the configured rate', async () => {
    let now = 0;
    const b = new TokenBucket(1000, 0.1, () => now);
    // 100 tokens of burst available; 1100 bytes need one more second of refill.
    const sleeps: number[] = [];
    const realSetTimeout = globalThis.setTimeout;
    (globalThis as { setTimeout: unknown }).setTimeout = ((fn: () => void, ms: number) => {
      sleeps.push(ms);
      now += ms;
      return realSetTimeout(fn, 0);
    }) as typeof setTimeout;
    try {
      await b.take(1100);
    } finally {
      (globalThis as { setTimeout: unknown }).setTimeout = realSetTimeout;
    }
    const slept = sleeps.reduce((s, x) => s + x, 0);
    expect(slept).toBeGreaterThanOrEqual(1000);
    expect(slept).toBeLessThan(1100);
  });

  it('changes rate on the fly', () => {
    const b = new TokenBucket(1000);
    b.setRate(5);
    expect(b.rateBps).toBe(5);
    b.setRate(Infinity);
    expect(b.rateBps).toBe(Infinity);
  });
});
