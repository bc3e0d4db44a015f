import type { Command } from 'commander';
import { globalOptions, type Ctx } from '../main.js';
import { printJson, printText, reportError } from '../output.js';

export function registerPluginsCommand(program: Command, ctx: Ctx): void {
  globalOptions(program.command('plugins'))
    .description('list the loaded plugins, where each comes from, and the hooks each taps')
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; json?: boolean; logLevel?: string; logFormat?: string }) => {
      try {
        const { createCore } = await import('../setup.js');
        const { core, file } = await createCore({ configFile: opts.config, logLevel: opts.logLevel ?? 'warn', logFormat: opts.logFormat });
        const list = core.plugins();
        if (opts.json) printJson({ config: file ?? null, plugins: list });
        else {
          printText(file ? `configuration: ${file}` : 'configuration: none found (defaults)');
          for (const p of list) {
            printText(`${p.name}${p.provides.length ? `  [${p.provides.join(', ')}]` : ''}\n  from   ${p.source}\n  taps   ${p.hooks.join(', ') || '(none)'}`);
          }
        }
        ctx.exitCode = 0;
      } catch (e) {
        ctx.exitCode = reportError(e, opts.json);
      }
    });
}
