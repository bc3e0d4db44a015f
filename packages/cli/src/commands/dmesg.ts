import type { Command } from 'commander';
import { Option } from 'commander';
import { VcvError } from '@vicover/errors';
import type { Ctx } from '../main.js';
import { printJson, printText, reportError } from '../output.js';

export function registerDmesgCommand(program: Command, ctx: Ctx): void {
  program
    .command('dmesg')
    .description("print the guest kernel's log (printk ring buffer) from a memory image or a dump")
    .argument('<image-or-dump>', 'raw RAM file, ELF vmcore or kdump file')
    .option('--panic', 'print only the panic message ("Kernel panic - not syncing: …")')
    .option('--vmcoreinfo <file>', 'VMCOREINFO text to use when the image carries none')
    .addOption(new Option('--layout <layout>', 'layout of a raw RAM file').choices(['auto', 'flat', 'pc']).default('auto'))
    .option('--json', 'print JSON: { panic, lines }')
    .action(async (file: string, o: { panic?: boolean; vmcoreinfo?: string; layout: 'auto' | 'flat' | 'pc'; json?: boolean }) => {
      try {
        const [{ openImage }, { LinuxKernel, findPanicLine, formatDmesg }] = await Promise.all([import('@vicover/image'), import('@vicover/plugin-linux')]);
        const memory = await openImage(file, { layout: o.layout });
        try {
          const kernel = await LinuxKernel.open(memory, o.vmcoreinfo ? { file: o.vmcoreinfo } : {});
          const log = await kernel.printk();
          const panic = findPanicLine(log.records);
          if (o.panic) {
            if (!panic) throw new VcvError('VCV_ERR_PRINTK', `${file}: the kernel log has no "Kernel panic - not syncing" line`);
            if (o.json) printJson({ panic });
            else printText(panic);
          } else if (o.json) {
            printJson({ panic: panic ?? null, lines: log.records.map((r) => ({ seq: r.seq.toString(), tsNsec: r.tsNsec.toString(), level: r.level, text: r.text })) });
          } else printText(formatDmesg(log.records));
        } finally {
          await memory.close();
        }
        ctx.exitCode = 0;
      } catch (e) {
        ctx.exitCode = reportError(e, o.json);
      }
    });
}
