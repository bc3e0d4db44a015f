#!/usr/bin/env node
import { main } from './main.js';

/**
 * A finished command must end the process. If something a plugin or backend left open (a child
 * process, a pipe, a watcher) still holds the event loop after the grace period, say what it is
 * and exit anyway with the command's status: a `daemon --once` that never exits would hang its caller.
 */
const GRACE_MS = 10_000;

function exitWhenDone(code: number): void {
  process.exitCode = code;
  const t = setTimeout(() => {
    const open = process.getActiveResourcesInfo();
    process.stderr.write(`vicover: still running ${GRACE_MS / 1000} s after the command finished (open: ${open.join(', ') || 'unknown'}); exiting\n`);
    process.exit(code);
  }, GRACE_MS);
  t.unref();
}

main(process.argv).then(exitWhenDone, (e) => {
  process.stderr.write(`vicover: internal error: ${e instanceof Error ? e.stack : String(e)}\n`);
  exitWhenDone(70);
});
