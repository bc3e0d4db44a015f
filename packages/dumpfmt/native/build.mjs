#!/usr/bin/env node
// Builds the native helpers (see Makefile) as part of `npm run build`. Each is optional: without a C
// compiler, zlib's headers or Node's, the build goes on and the dump writers use their JavaScript
// path for what that helper does (same output, slower).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const nodeInclude = path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
const helpers = [
  ['build/vicover-copy', 'the native copy helper', 'raw dumps are copied through Node', 'gcc, libc6-dev and make'],
  ['build/vicover-pack.node', 'the native page packer', 'zlib pages are compressed with node:zlib', 'gcc, make and zlib1g-dev (and Node.js headers)'],
  ['build/vicover-spawn.node', 'the posix_spawn starter of the copy helper', 'the copy helper is started with child_process.spawn', 'gcc and make (and Node.js headers)'],
];
for (const [target, what, fallback, needs] of helpers) {
  const r = spawnSync('make', ['-s', '-C', dir, target, `NODE_INCLUDE=${nodeInclude}`], { stdio: 'inherit' });
  if (r.error || r.status !== 0) {
    process.stderr.write(
      `vicover: ${what} was not built (${r.error ? r.error.message : `make exited ${r.status}`}); ${fallback}. ` +
        `Install ${needs}, then run \`npm run build\` again.\n`,
    );
  }
}
