/**
 * The modelled disk is a fluid model: its answers are exact functions of the model clock. Run on
 * vitest's fake clock, so these are checks of the model's arithmetic, not of wall time.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ModelledDisk } from '@vicover/plugin-simhost';

const MB = 1_000_000;

describe('ModelledDisk (fair share, caps, small requests)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('one stream gets the whole bandwidth', async () => {
    const d = new ModelledDisk(100 * MB, () => Date.now());
    let done = false;
    void d.transfer('dump', 50 * MB).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(499);
    expect(done).toBe(false);
    expect(d.stats('dump').writeBytes).toBeCloseTo(49.9 * MB, -4);
    await vi.advanceTimersByTimeAsync(2);
    expect(done).toBe(true);
    expect(d.stats('dump').writeBytes).toBe(50 * MB);
  });

  it('two backlogged streams share it equally; one alone gets it all again', async () => {
    const d = new ModelledDisk(100 * MB, () => Date.now());
    void d.transfer('dump', 100 * MB);
    void d.transfer('vm:a', 20 * MB, false);
    await vi.advanceTimersByTimeAsync(200);
    // 0.2 s at 50 MB/s each.
    expect(d.stats('vm:a').readBytes).toBeCloseTo(10 * MB, -4);
    expect(d.stats('dump').writeBytes).toBeCloseTo(10 * MB, -4);
    await vi.advanceTimersByTimeAsync(200);
    expect(d.stats('vm:a').readBytes).toBe(20 * MB);
    // From 0.4 s on the dump is alone: 20 MB + 0.2 s × 100 MB/s.
    await vi.advanceTimersByTimeAsync(200);
    expect(d.stats('dump').writeBytes).toBeCloseTo(40 * MB, -4);
  });

  it('a capped stream leaves the rest to the other (work conserving)', async () => {
    const d = new ModelledDisk(100 * MB, () => Date.now());
    d.setCap('vm:a', 10 * MB);
    void d.transfer('dump', 1000 * MB);
    void d.transfer('vm:a', 1000 * MB, false);
    await vi.advanceTimersByTimeAsync(1000);
    expect(d.stats('vm:a').readBytes).toBeCloseTo(10 * MB, -4);
    expect(d.stats('dump').writeBytes).toBeCloseTo(90 * MB, -4);
    expect(d.rates()).toEqual({ dump: 90 * MB, 'vm:a': 10 * MB });
    d.setCap('vm:a', Infinity);
    await vi.advanceTimersByTimeAsync(1000);
    expect(d.stats('vm:a').readBytes).toBeCloseTo(60 * MB, -4);
  });

  it('requests shorter than a timer tick are paid for by the next one: the average rate holds', async () => {
    const d = new ModelledDisk(100 * MB, () => Date.now());
    // 1000 writes of 10 kB (0.1 ms each) then one of 1 MB: 11 MB in all = 110 ms at 100 MB/s.
    let done = false;
    void (async () => {
      for (let i = 0; i < 1000; i++) await d.transfer('dump', 10_000);
      await d.transfer('dump', MB);
      done = true;
    })();
    await vi.advanceTimersByTimeAsync(100);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(30);
    expect(done).toBe(true);
    expect(d.stats('dump').writeBytes).toBe(11 * MB);
  });

  it('dropping a stream fails its requests', async () => {
    const d = new ModelledDisk(100 * MB, () => Date.now());
    const p = d.transfer('vm:x', 100 * MB, false);
    d.drop('vm:x', 'stopped');
    await expect(p).rejects.toThrow(/stopped/);
  });
});
