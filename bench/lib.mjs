// Shared by the benchmarks on real QEMU guests (bench/downtime.mjs, bench/io.mjs): waiting, the
// outside HTTP client that measures when the service answers, and allocated bytes of a sparse file.
import * as http from 'node:http';
import { statSync } from 'node:fs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** GET url; the body on HTTP 200, else null (errors and time-outs included). */
export function httpGet(url, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : null));
      res.on('error', () => resolve(null));
    });
    req.on('error', () => resolve(null));
    req.setTimeout(timeoutMs, () => req.destroy());
  });
}

/** Poll fn until it returns something truthy; throw after timeoutMs naming `what`. */
export async function until(what, fn, timeoutMs, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

/**
 * The outside client: GET url every everyMs; a sample is ok when the answer contains `marker`.
 * Each sample is stamped when its request was sent, so an answer in flight at the crash does not
 * count as service after it.
 */
export function pollService(url, marker, everyMs = 100) {
  const samples = [];
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    const t = Date.now();
    const body = await httpGet(url);
    samples.push({ t, ok: body !== null && body.includes(marker) });
    busy = false;
  }, everyMs);
  return {
    samples,
    /** The first time at or after `from` (ms since the epoch) the service answered. */
    backAfter: (from) => samples.find((s) => s.t >= from && s.ok)?.t,
    answered: () => samples.some((s) => s.ok),
    stop: () => clearInterval(timer),
  };
}

/** Bytes a (sparse) file has allocated; 0 when it is gone. */
export function allocatedBytes(f) {
  try {
    return statSync(f).blocks * 512;
  } catch {
    return 0;
  }
}
