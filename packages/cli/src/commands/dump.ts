import type { Command } from 'commander';
import type { Ctx } from '../main.js';

export function registerDumpCommand(program: Command, ctx: Ctx): void {
  void program;
  void ctx;
}
