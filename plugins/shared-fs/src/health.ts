/**
 * Health checks for a recovery VM: what "the service is back" means, as an outside client sees it.
 *
 * - http:   GET a URL; passes on the expected status and (optionally) a body matching a regex.
 * - tcp:    a TCP connect succeeds. Beware QEMU user networking: slirp accepts forwarded connections
 *           on the host side before the guest listens, so use `http` (or a banner) behind hostfwd.
 * - serial: a console line matches a regex (the backend follows the VM's console).
 *
 * Targets may name the VM's forwarded endpoints: `http://{tcp/80}/` becomes `http://127.0.0.1:8080/`
 * with the backend's `endpointsOf(vm)`.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { VcvError } from '@vicover/errors';

export interface HealthOptions {
  readonly type: 'http' | 'tcp' | 'serial';
  readonly url?: string;
  readonly expectStatus: number;
  readonly bodyRegex?: string;
  readonly target?: string;
  readonly lineRegex?: string;
  readonly intervalMs: number;
  readonly requestTimeoutMs: number;
}

/** Replace `{name}` placeholders with the VM's endpoints. */
export function expand(template: string, endpoints: Readonly<Record<string, string>>): string {
  return template.replace(/\{([^{}]+)\}/g, (all, key: string) => {
    const v = endpoints[key];
    if (v === undefined) {
      throw new VcvError('VCV_ERR_RECOVERY', `shared-fs: the health check names the endpoint {${key}}, but the recovery VM has ${Object.keys(endpoints).map((k) => `{${k}}`).join(', ') || 'no endpoints'}`, { endpoint: key });
    }
    return v;
  });
}

export interface ProbeResult {
  readonly ok: boolean;
  readonly detail: string;
}

/** One HTTP GET without connection reuse (the VM behind the port changes during a recovery). */
export function probeHttp(url: string, o: { expectStatus: number; bodyRegex?: RegExp; timeoutMs: number }): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 1 << 20) body += d;
      });
      res.on('end', () => {
        if (res.statusCode !== o.expectStatus) return finish({ ok: false, detail: `status ${res.statusCode}` });
        if (o.bodyRegex && !o.bodyRegex.test(body)) return finish({ ok: false, detail: 'body does not match' });
        finish({ ok: true, detail: `status ${res.statusCode}` });
      });
      res.on('error', (e) => finish({ ok: false, detail: e.message }));
    });
    req.on('error', (e) => finish({ ok: false, detail: (e as NodeJS.ErrnoException).code ?? e.message }));
    const timer = setTimeout(() => {
      req.destroy();
      finish({ ok: false, detail: 'timeout' });
    }, o.timeoutMs);
  });
}

export function probeTcp(target: string, timeoutMs: number): Promise<ProbeResult> {
  const i = target.lastIndexOf(':');
  const host = target.slice(0, i) || '127.0.0.1';
  const port = Number(target.slice(i + 1));
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, detail: 'timeout' });
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ ok: true, detail: 'connected' });
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: (e as NodeJS.ErrnoException).code ?? e.message });
    });
  });
}
