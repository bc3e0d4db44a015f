#!/usr/bin/env node
// Thin launcher: the CLI is written in TypeScript and compiled to dist/ by `npm run build` (the
// README's first command runs it after `npm ci`; `npm test` runs it first).
import('../dist/bin.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/bin.js')) {
    process.stderr.write('vicover: the CLI is not built yet; run `npm run build` in the repository first\n');
    process.exit(70);
  }
  throw err;
});
