/**
 * Test-only plugin (loaded by path in the e2e configuration): writes every chunk's memory, as the
 * session's MemorySource reads it, into a sparse reference file (file offset = guest-physical
 * address) right after the chunk became durable and before it is released. libkdumpfile later compares
 * each page of the dump with it. The reader itself is checked against `xl dump-core` separately.
 */
import { openSync, writeSync, closeSync, fsyncSync } from 'node:fs';

export default {
  name: 'xen-test-reference',
  coreVersion: '^0.1.0',
  optionsSchema: { type: 'object', additionalProperties: false, required: ['file'], properties: { file: { type: 'string' } } },
  apply(core, options) {
    const fd = openSync(options.file, 'w', 0o600);
    const buf = Buffer.allocUnsafe(4 << 20);
    let pages = 0;
    core.hooks.onChunkDumped.tapPromise('xen-test-reference', async (chunk, session) => {
      for (let a = chunk.range.start; a < chunk.range.end; a += buf.length) {
        const n = Math.min(buf.length, chunk.range.end - a);
        // Only pages the dump holds matter; read RAM ranges only.
        for (const r of session.memory.ranges) {
          const lo = Math.max(r.start, a);
          const hi = Math.min(r.end, a + n);
          if (lo >= hi) continue;
          await session.memory.read(lo, buf, 0, hi - lo);
          writeSync(fd, buf, 0, hi - lo, lo);
          pages += (hi - lo) / 4096;
        }
      }
    });
    core.hooks.shutdown.tapPromise('xen-test-reference', async () => {
      fsyncSync(fd);
      closeSync(fd);
      core.logger('xen-test-reference').info({ pages, file: options.file }, 'reference copy written');
    });
  },
};
