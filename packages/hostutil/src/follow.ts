/**
 * Follow a console log file line by line (QEMU `-serial file:PATH`; xenconsoled --log=guest writes
 * /var/log/xen/console/guest-NAME.log). Polls (default 200 ms): the file may not exist yet when
 * following starts, and it grows in small pieces. Returns a function that stops following.
 */
import { promises as fsp } from 'node:fs';

export function followFile(file: string, onLine: (line: string) => void, opts: { intervalMs?: number; fromStart?: boolean } = {}): () => void {
  let offset = 0;
  let partial = '';
  let stopped = false;
  let busy = false;
  let timer: NodeJS.Timeout | null = null;
  const buf = Buffer.allocUnsafe(64 * 1024);
  const poll = async () => {
    if (stopped || busy) return;
    busy = true;
    try {
      const fh = await fsp.open(file, 'r').catch(() => null);
      if (!fh) return;
      try {
        const size = (await fh.stat()).size;
        if (size < offset) offset = 0; // truncated / recreated
        while (offset < size && !stopped) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - offset), offset);
          if (bytesRead <= 0) break;
          offset += bytesRead;
          partial += buf.subarray(0, bytesRead).toString('utf8');
          let i: number;
          while ((i = partial.indexOf('\n')) >= 0) {
            const line = partial.slice(0, i).replace(/\r$/, '');
            partial = partial.slice(i + 1);
            try {
              onLine(line);
            } catch {
              /* a listener's error is its own */
            }
          }
        }
      } finally {
        await fh.close();
      }
    } finally {
      busy = false;
    }
  };
  const start = async () => {
    if (!opts.fromStart) offset = await fsp.stat(file).then((s) => s.size).catch(() => 0);
    if (stopped) return;
    void poll();
    timer = setInterval(() => void poll(), opts.intervalMs ?? 200);
    timer.unref?.();
  };
  void start();
  return () => {
    stopped = true;
    if (timer) clearInterval(timer);
  };
}
