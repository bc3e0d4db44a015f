/**
 * The crash daemon in-process, as the real-QEMU tests (test/e2e) and benchmarks (bench/) run it: a
 * core from a loaded configuration (debug JSON log into logFd), its plugins, a Daemon whose first
 * report resolves `finished`, started and attached to the VM under test. If attaching fails the
 * daemon is stopped before the error goes on.
 */
import { createLogger, Daemon, Vicover } from '@vicover/core';

export async function startDaemon({ config, plugins, logFd, extraPlugins = [], vm, attachMs }) {
  const core = new Vicover({ config, logger: createLogger({ level: 'debug', format: 'json', fd: logFd }) });
  for (const p of [...plugins, ...extraPlugins]) await core.use(p);
  let done;
  const h = { core, daemon: null, backend: core.backend(), session: undefined, finished: new Promise((r) => (done = r)) };
  h.daemon = new Daemon({ core, onReport: (r) => done(r), onSessionStart: (s) => (h.session = s) });
  await h.daemon.start();
  try {
    await h.backend.attached(vm, attachMs);
  } catch (e) {
    await h.daemon.stop('attach failed').catch(() => undefined);
    throw e;
  }
  return h;
}
