/**
 * Test-only plugin (loaded by path in the e2e configuration): writes the memory of every page the dump
 * holds, as the session's MemorySource reads it, into a sparse reference file (file offset =
 * guest-physical address) right after its chunk became durable and before it is released.
 * libkdumpfile later compares each page of the dump with it. The reader itself is checked against
 * `xl dump-core` separately.
 *
 * Only the pages selected for the dump are copied (the check reads no others): the tap runs inside the
 * measured downtime (it is awaited before the chunk is released — on PV, before the crashed domain is
 * destroyed), so copying all of RAM made the test's own instrumentation a large part of the dump time
 * it measures. The time it takes is logged at shutdown (`seconds`).
 */
import { openSync, writeSync, closeSync, fsyncSync } from 'node:fs';

export default {
  name: 'xen-test-reference',
  coreVersion: '^0.1.0',
  optionsSchema: { type: 'object', additionalProperties: false, required: ['file'], properties: { file: { type: 'string' } } },
  apply(core, options) {
    const fd = openSync(options.file, 'w', 0o600);
    const buf = Buffer.allocUnsafe(4 << 20);
    const maxPages = buf.length / 4096;
    let pages = 0;
    let ms = 0;
    core.hooks.onChunkDumped.tapPromise('xen-test-reference', async (chunk, session) => {
      const t0 = performance.now();
      const p0 = chunk.range.start / 4096;
      const p1 = chunk.range.end / 4096;
      for (const [a, z] of session.pages.dump.runs(p0, p1)) {
        for (let p = a; p < z; p += maxPages) {
          const n = Math.min(maxPages, z - p);
          await session.memory.read(p * 4096, buf, 0, n * 4096);
          writeSync(fd, buf, 0, n * 4096, p * 4096);
          pages += n;
        }
      }
      ms += performance.now() - t0;
    });
    core.hooks.shutdown.tapPromise('xen-test-reference', async () => {
      fsyncSync(fd);
      closeSync(fd);
      core.logger('xen-test-reference').info({ pages, seconds: Math.round(ms) / 1000, file: options.file }, 'reference copy written');
    });
  },
};
