export function haveCommand(cmd: string): boolean;
export function missingCommands(cmds: readonly string[], o?: { python?: readonly string[] }): string[];
