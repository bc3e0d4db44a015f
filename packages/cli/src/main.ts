/**
 * `vicover` — the command line. Subcommands live in commands/; each returns its exit status.
 * Exit codes: 0 ok, 64 usage, 65 bad input data, 66 missing input, 69 unavailable, 70 internal,
 * 73 cannot create output, 74 I/O error (full disk), 75 interrupted, 78 configuration error.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { reportError } from './output.js';

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

type Register = (program: Command, ctx: Ctx) => void;

/** Command modules in help order, each loaded only when needed. */
const COMMANDS: readonly (readonly [string, () => Promise<Register>])[] = [
  ['demo', async () => (await import('./commands/demo.js')).registerDemoCommand],
  ['daemon', async () => (await import('./commands/daemon.js')).registerDaemonCommand],
  ['dump', async () => (await import('./commands/dump.js')).registerDumpCommand],
  ['dmesg', async () => (await import('./commands/dmesg.js')).registerDmesgCommand],
  ['inspect', async () => (await import('./commands/inspect.js')).registerInspectCommand],
  ['report', async () => (await import('./commands/report.js')).registerReportCommand],
  ['config', async () => (await import('./commands/config.js')).registerConfigCommands],
  ['plugins', async () => (await import('./commands/plugins.js')).registerPluginsCommand],
];

/** The commands to register for these arguments: only the one named (fast start), or all (help, errors). */
async function commandsFor(argv: readonly string[]): Promise<Register[]> {
  const name = argv[2];
  if (name === '--version' || name === '-V') return [];
  const one = COMMANDS.find(([n]) => n === name);
  const list = one ? [one] : COMMANDS;
  return Promise.all(list.map(([, load]) => load()));
}

export async function buildProgram(ctx: Ctx, argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('vicover')
    .description('Vicover: dump a crashed VM selectively while a recovery VM takes over its memory chunk by chunk')
    .version(CORE_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.configureHelp({ sortSubcommands: false });
  for (const register of await commandsFor(argv)) register(program, ctx);
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
  const program = await buildProgram(ctx, argv);
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
