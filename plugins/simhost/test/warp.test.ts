/**
 * The time warp, in child processes (it replaces the process's timers and clock): timers fire in
 * order with their modelled delays, intervals and clearTimeout/refresh/unref behave like Node's, a
 * pending file-system request holds the clock, and uninstall() restores the real timers.
 */
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function run(body: string): Promise<Record<string, unknown>> {
  const src = `
    const { installTimeWarp } = await import('@vicover/plugin-simhost');
    const out = {};
    ${body}
    process.stdout.write(JSON.stringify(out));`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', src], { cwd: process.cwd(), timeout: 60_000 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`${e.message}\n${stderr}`));
      resolve(JSON.parse(stdout));
    });
  });
}

describe('time warp', () => {
  it('fires timers in modelled-time order and skips the waits', async () => {
    const r = await run(`
      const w = installTimeWarp();
      const t0 = performance.now();
      const order = [];
      await Promise.all([
        new Promise((res) => setTimeout(() => { order.push('b'); res(); }, 20_000)),
        new Promise((res) => setTimeout(() => { order.push('a'); res(); }, 5_000)),
        new Promise((res) => setTimeout((x) => { order.push(x); res(); }, 60_000, 'c')),
      ]);
      out.order = order;
      out.elapsed = performance.now() - t0;
      out.skipped = w.skippedMs;
      const cleared = setTimeout(() => (out.cleared = false), 10);
      clearTimeout(cleared);
      let ticks = 0;
      const iv = setInterval(() => ticks++, 1000);
      await new Promise((res) => setTimeout(res, 10_500));
      clearInterval(iv);
      out.ticks = ticks;
      const r = setTimeout(() => (out.refreshedAt = performance.now() - t1), 1000);
      const t1 = performance.now();
      await new Promise((res) => setTimeout(res, 600));
      r.refresh();
      await new Promise((res) => setTimeout(res, 2000));
      w.uninstall();
      out.restored = typeof setTimeout(() => {}, 0).hasRef === 'function' && !('__vtimer' in setTimeout(() => {}, 0));
    `);
    expect(r.order).toEqual(['a', 'b', 'c']);
    expect(r.elapsed as number).toBeGreaterThanOrEqual(60_000);
    expect(r.skipped as number).toBeGreaterThan(50_000);
    expect(r.cleared).toBeUndefined();
    expect(r.ticks).toBe(10);
    expect(r.refreshedAt as number).toBeGreaterThanOrEqual(1600);
    expect(r.restored).toBe(true);
  });

  it('file-system work in flight holds the clock; unref timers never keep the process alive', async () => {
    const r = await run(`
      const fs = await import('node:fs/promises');
      const w = installTimeWarp();
      // The clock does not jump to a waiting timer while a write is in flight.
      let fired = false;
      const t = setTimeout(() => (fired = true), 100_000);
      await fs.writeFile('/dev/null', Buffer.alloc(1 << 20));
      out.firedBeforeWrite = fired;
      clearTimeout(t);
      setTimeout(() => (out.unrefFired = true), 100_000).unref();
      await new Promise((res) => setTimeout(res, 10));
      out.settled = true;
    `);
    expect(r.settled).toBe(true);
    expect(r.firedBeforeWrite).toBe(false);
    // The process exited without waiting for the unref'd 100 s timer.
    expect(r.unrefFired).toBeUndefined();
  });
});
