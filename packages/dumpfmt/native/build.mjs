#!/usr/bin/env node
// Builds native/build/vicover-copy (see copy.c) as part of `npm run build`. Without a C compiler the
// build goes on: the dump writers then use their JavaScript path (same output, slower for raw dumps).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const r = spawnSync('make', ['-s', '-C', dir], { stdio: 'inherit' });
if (r.error || r.status !== 0) {
  process.stderr.write(
    `vicover: the native copy helper was not built (${r.error ? r.error.message : `make exited ${r.status}`}); ` +
      'dumps use the JavaScript path. Install gcc, libc6-dev and make, then run `npm run build` again.\n',
  );
}
