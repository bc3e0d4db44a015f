/**
 * CPU state of a crashed guest: HMP `info registers -a` (through QMP `human-monitor-command`) parsed
 * into x86-64 registers, one NT_PRSTATUS note per vCPU. `query-cpus-fast` has no registers, so the
 * HMP text is the only QMP-reachable source on QEMU 7.2.
 *
 * The note is filled the way QEMU's own dump-guest-memory fills it (target/i386/arch_dump.c
 * `x86_64_write_elf64_note`): segment registers as selectors, fs_base/gs_base from the segment
 * bases, orig_rax 0 (QEMU has no value for it), pid = cpu index + 1 — byte for byte what QEMU writes.
 */
import { prstatusNote, type ElfNote, type X86Regs } from '@vicover/dumpfmt';
import { VcvError } from '@vicover/errors';

export interface ParsedCpu {
  readonly index: number;
  readonly regs: X86Regs;
  /** Control registers and friends the note has no room for (kept for the report and for tests). */
  readonly cr3: bigint;
  readonly halted: boolean;
}

const GPR: Record<string, keyof X86Regs> = {
  RAX: 'rax', RBX: 'rbx', RCX: 'rcx', RDX: 'rdx', RSI: 'rsi', RDI: 'rdi', RBP: 'rbp', RSP: 'rsp',
  R8: 'r8', R9: 'r9', R10: 'r10', R11: 'r11', R12: 'r12', R13: 'r13', R14: 'r14', R15: 'r15',
  RIP: 'rip', RFL: 'eflags',
};

const SEGS = ['ES', 'CS', 'SS', 'DS', 'FS', 'GS'] as const;

/** Parse the text of `info registers -a` (64-bit guests). Throws VCV_ERR_BACKEND when it is not that. */
export function parseInfoRegisters(text: string): ParsedCpu[] {
  const parts = text.split(/^CPU#(\d+)\s*$/m);
  // parts: [preamble, idx0, body0, idx1, body1, …]; a single-CPU `info registers` has no header.
  const blocks: { index: number; body: string }[] = [];
  if (parts.length === 1) blocks.push({ index: 0, body: text });
  for (let i = 1; i + 1 < parts.length; i += 2) blocks.push({ index: Number(parts[i]), body: parts[i + 1]! });
  const cpus: ParsedCpu[] = [];
  for (const { index, body } of blocks) {
    const regs: X86Regs = {};
    const seen = new Set<string>();
    for (const m of body.matchAll(/\b(R[A-Z0-9]{1,2})\s*=([0-9a-fA-F]{8,16})\b/g)) {
      const name = GPR[m[1]!];
      if (!name || seen.has(m[1]!)) continue;
      seen.add(m[1]!);
      regs[name] = BigInt(`0x${m[2]}`);
    }
    for (const s of SEGS) {
      const m = new RegExp(`^${s}\\s*=([0-9a-fA-F]{4}) ([0-9a-fA-F]{8,16})`, 'm').exec(body);
      if (!m) continue;
      const sel = BigInt(`0x${m[1]}`);
      const base = BigInt(`0x${m[2]}`);
      regs[s.toLowerCase() as 'cs'] = sel;
      if (s === 'FS') regs.fs_base = base;
      if (s === 'GS') regs.gs_base = base;
    }
    const missing = ['rip', 'rsp', 'rax', 'eflags'].filter((r) => regs[r as keyof X86Regs] === undefined);
    if (missing.length) {
      throw new VcvError('VCV_ERR_BACKEND', `qemu: cannot parse CPU#${index} of "info registers -a" (missing ${missing.join(', ')}); is this a 64-bit x86 guest?`, {
        cpu: index,
        sample: body.slice(0, 200),
      });
    }
    const cr3 = /\bCR3=([0-9a-fA-F]+)/.exec(body);
    cpus.push({ index, regs, cr3: cr3 ? BigInt(`0x${cr3[1]}`) : 0n, halted: /\bHLT=1\b/.test(body) });
  }
  if (cpus.length === 0) throw new VcvError('VCV_ERR_BACKEND', 'qemu: "info registers -a" returned no CPU', { sample: text.slice(0, 200) });
  cpus.sort((a, b) => a.index - b.index);
  return cpus;
}

/** One NT_PRSTATUS note per vCPU, in CPU order (the notes carry no CPU number of their own). */
export function cpuNotes(cpus: readonly ParsedCpu[]): ElfNote[] {
  return cpus.map((c) => prstatusNote(c.index, c.regs));
}
