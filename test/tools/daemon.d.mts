import type { CrashReport, CrashSession, Daemon, ResolvedConfig, Vicover } from '@vicover/core';
export interface InProcessDaemon<B> {
  core: Vicover;
  daemon: Daemon;
  backend: B;
  /** The crash session, once one started. */
  session: CrashSession | undefined;
  /** The first crash report. */
  finished: Promise<CrashReport>;
}
export function startDaemon<B = unknown>(o: {
  config: ResolvedConfig['config'];
  plugins: ResolvedConfig['plugins'];
  logFd: number;
  extraPlugins?: readonly unknown[];
  vm: string;
  attachMs?: number;
}): Promise<InProcessDaemon<B>>;
