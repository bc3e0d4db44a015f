import type { Command } from 'commander';
import { globalOptions, type Ctx } from '../main.js';
import { printJson, printText, reportError } from '../output.js';

export function registerConfigCommands(program: Command, ctx: Ctx): void {
  const config = program.command('config').description('configuration tools');
  globalOptions(config.command('check'))
    .description('validate the configuration and print the effective one (defaults applied); exit 0 ok, 78 config error')
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; json?: boolean }) => {
      try {
        const [{ loadConfig }, { stringify }] = await Promise.all([import('@vicover/core'), import('yaml')]);
        const r = await loadConfig({ file: opts.config });
        const out = {
          file: r.file ?? null,
          config: r.config,
          plugins: r.plugins.map((p) => ({ name: p.plugin.name, source: p.source, options: p.options })),
        };
        if (opts.json) printJson({ ok: true, ...out });
        else {
          printText(`# ${r.file ? `configuration from ${r.file}` : 'no configuration file found: defaults'} — valid`);
          printText(stringify({ ...r.config, plugins: out.plugins.map((p) => (Object.keys(p.options).length ? [p.name, p.options] : p.name)) }));
        }
        ctx.exitCode = 0;
      } catch (e) {
        ctx.exitCode = reportError(e, opts.json);
      }
    });
}
