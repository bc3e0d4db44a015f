import type { Command } from 'commander';
import { Daemon } from '@vicover/core';
import { htmlReportWriter } from '@vicover/report';
import { globalOptions, type Ctx } from '../main.js';
import { reportError } from '../output.js';
import { createCore } from '../setup.js';

export function registerDaemonCommand(program: Command, ctx: Ctx): void {
  globalOptions(program.command('daemon'))
    .description('watch the VMs of the configured backend; for each crash: dump selectively, recover in parallel, hand memory over chunk by chunk')
    .option('--once', 'exit after the first crash session has finished (tests, demos)')
    .action(async (opts: { config?: string; once?: boolean; logLevel?: string; logFormat?: string }) => {
      try {
        const { core } = await createCore({ configFile: opts.config, logLevel: opts.logLevel, logFormat: opts.logFormat });
        let done!: () => void;
        const finished = new Promise<void>((r) => (done = r));
        // report.html next to each report.json (config report.html, default on).
        const pages = htmlReportWriter({ enabled: core.config.report.html });
        const daemon = new Daemon({
          core,
          onReport: (report, session) => {
            pages.onReport(report, session);
            if (opts.once) done();
          },
        });
        const onSignal = (sig: NodeJS.Signals) => {
          void daemon.stop('signal', sig).then(done);
        };
        process.once('SIGTERM', onSignal);
        process.once('SIGINT', onSignal);
        await daemon.start();
        core.log.info('daemon ready');
        await finished;
        await daemon.stop(opts.once ? 'once' : 'signal');
        await pages.settled();
        ctx.exitCode = 0;
      } catch (e) {
        ctx.exitCode = reportError(e);
      }
    });
}
