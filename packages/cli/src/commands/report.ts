import type { Command } from 'commander';
import type { Ctx } from '../main.js';

export function registerReportCommand(program: Command, ctx: Ctx): void {
  void program;
  void ctx;
}
