/**
 * The outside view of a guest's service, for the real-QEMU tests (test/e2e) and benchmarks (bench/):
 * waiting for a condition, one HTTP GET, a client that polls the service every 100 ms, and the
 * allocated bytes of a (sparse) RAM file.
 */
import * as http from 'node:http';
import { statSync } from 'node:fs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll fn until it returns something truthy; throw after timeoutMs naming `what`. */
export async function until(what, fn, timeoutMs = 60_000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

/** One GET without connection reuse; the body when the status is 200, else null. */
export function httpGet(url, timeoutMs = 2000) {
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

/**
 * The outside client: GET url every everyMs; a sample is ok when the answer matches `expect`. Each
 * sample is stamped when its request was sent, so an answer in flight at the crash does not count as
 * service after it.
 */
export class ClientPoller {
  constructor(url, expect, everyMs = 100) {
    this.url = url;
    this.expect = expect;
    this.everyMs = everyMs;
    this.samples = [];
    this.timer = null;
    this.busy = false;
  }

  start() {
    this.timer = setInterval(async () => {
      if (this.busy) return;
      this.busy = true;
      const t = Date.now();
      const body = await httpGet(this.url, 1000);
      this.samples.push({ t, ok: body !== null && this.expect.test(body) });
      this.busy = false;
    }, this.everyMs);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
  }

  /** Whether the service has answered at all. */
  answered() {
    return this.samples.some((s) => s.ok);
  }

  /** The first successful answer at or after `t` (ms since epoch). */
  firstOkAfter(t) {
    return this.samples.find((s) => s.t >= t && s.ok)?.t ?? null;
  }

  /** The last successful answer before `t`. */
  lastOkBefore(t) {
    return [...this.samples].reverse().find((s) => s.t < t && s.ok)?.t ?? null;
  }
}

/** Bytes a (sparse) file has allocated; 0 when it is gone. */
export function allocatedBytes(f) {
  try {
    return statSync(f).blocks * 512;
  } catch {
    return 0;
  }
}
