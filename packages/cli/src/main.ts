/**
 * `vicover` — the command line. Subcommands live in commands/; each returns its exit status.
 * Exit codes: 0 ok, 64 usage, 65 bad input data, 66 missing input, 69 unavailable, 70 internal,
 * 73 cannot create output, 74 I/O error (full disk), 75 interrupted, 78 configuration error.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { reportError } from './output.js';
import { registerConfigCommands } from './commands/config.js';
import { registerPluginsCommand } from './commands/plugins.js';
import { registerInspectCommand } from './commands/inspect.js';
import { registerDaemonCommand } from './commands/daemon.js';
import { registerDumpCommand } from './commands/dump.js';
import { registerDmesgCommand } from './commands/dmesg.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerReportCommand } from './commands/report.js';

// Command modules import their heavy dependencies inside their actions: `vicover dump` must not pay
// for the daemon's modules at start-up (whole-process time is what the benchmarks compare).
const CORE_VERSION = (createRequire(import.meta.url)('@vicover/core/package.json') as { version: string }).version;

export interface Ctx {
  /** Set by the action that ran. */
  exitCode: number;
}

export function globalOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('-c, --config <file>', 'configuration file (default: searched as vicover.config.*, .vicoverrc*, package.json#vicover)'))
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(new Option('--log-format <format>', 'log format').choices(['auto', 'json', 'pretty']));
}

export function buildProgram(ctx: Ctx): Command {
  const program = new Command('vicover')
    .description('Vicover: dump a crashed VM selectively while a recovery VM takes over its memory chunk by chunk')
    .version(CORE_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.configureHelp({ sortSubcommands: false });
  registerDemoCommand(program, ctx);
  registerDaemonCommand(program, ctx);
  registerDumpCommand(program, ctx);
  registerDmesgCommand(program, ctx);
  registerInspectCommand(program, ctx);
  registerReportCommand(program, ctx);
  registerConfigCommands(program, ctx);
  registerPluginsCommand(program, ctx);
  program.addHelpText(
    'after',
    `
Exit codes: 0 ok · 64 usage · 65 bad input data · 66 input missing · 69 backend/tool unavailable ·
70 internal error · 73 output cannot be created · 74 I/O error or full disk · 75 interrupted · 78 config error
Docs: docs/cli.md, docs/errors.md`,
  );
  return program;
}

/** Run the CLI; resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const ctx: Ctx = { exitCode: 0 };
  const program = buildProgram(ctx);
  const json = argv.includes('--json');
  try {
    await program.parseAsync([...argv]);
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 64;
    }
    return reportError(e, json);
  }
}
