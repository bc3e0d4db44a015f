#!/usr/bin/env node
// Builds the native struct-page decode (see Makefile) as part of `npm run build`. Optional: without a
// C compiler or Node's headers the build goes on and the classifier uses its JavaScript loop.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const nodeInclude = path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
const r = spawnSync('make', ['-s', '-C', dir, 'build/vicover-classify.node', `NODE_INCLUDE=${nodeInclude}`], { stdio: 'inherit' });
if (r.error || r.status !== 0) {
  process.stderr.write(
    `vicover: the native page classifier was not built (${r.error ? r.error.message : `make exited ${r.status}`}); ` +
      'the Linux page filter uses its JavaScript loop. Install gcc and make (and Node.js headers), then run `npm run build` again.\n',
  );
}
