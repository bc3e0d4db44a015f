/**
 * vCPU registers of a crashed domain (the helper's `regs`: PV vcpu context, or the HVM CPU save
 * record for PVH/HVM) → one x86-64 NT_PRSTATUS note per vCPU, filled the way the QEMU backend fills it
 * (segment selectors, fs_base/gs_base, orig_rax 0, pid = vCPU + 1).
 */
import { prstatusNote, X86_REG_NAMES, type ElfNote, type X86Regs } from '@vicover/dumpfmt';
import { VcvError } from '@vicover/errors';

export interface HelperVcpu {
  readonly id: number;
  readonly online: boolean;
  readonly source?: string;
  readonly regs?: Readonly<Record<string, string>>;
  readonly cr3?: string;
  readonly kernelMode?: boolean;
  readonly error?: string;
}

export interface ParsedVcpu {
  readonly id: number;
  readonly online: boolean;
  readonly regs: X86Regs;
  /** Guest-physical CR3 (PV: the machine frame translated through the p2m). */
  readonly cr3: bigint;
}

const NAMES = new Set<string>(X86_REG_NAMES);

/** Parse the helper's vCPU list; vCPUs the helper could not read are dropped (their error is kept). */
export function parseVcpus(vcpus: readonly HelperVcpu[]): { cpus: ParsedVcpu[]; errors: string[] } {
  const cpus: ParsedVcpu[] = [];
  const errors: string[] = [];
  for (const v of vcpus) {
    if (v.error || !v.regs) {
      errors.push(`vcpu ${v.id}: ${v.error ?? (v.online ? 'no registers' : 'offline (taken down before the crash)')}`);
      continue;
    }
    const regs: X86Regs = {};
    for (const [k, val] of Object.entries(v.regs)) {
      if (!NAMES.has(k)) continue;
      if (!/^0x[0-9a-f]+$/i.test(val)) throw new VcvError('VCV_ERR_BACKEND', `xen: vcpu ${v.id} register ${k} is not a number: ${val}`, { vcpu: v.id });
      regs[k as keyof X86Regs] = BigInt(val);
    }
    if (regs.rip === undefined || regs.rsp === undefined) {
      errors.push(`vcpu ${v.id}: rip/rsp missing`);
      continue;
    }
    cpus.push({ id: v.id, online: v.online, regs, cr3: v.cr3 && /^0x[0-9a-f]+$/i.test(v.cr3) ? BigInt(v.cr3) : 0n });
  }
  cpus.sort((a, b) => a.id - b.id);
  return { cpus, errors };
}

/** One NT_PRSTATUS per vCPU, in vCPU order. */
export function vcpuNotes(cpus: readonly ParsedVcpu[]): ElfNote[] {
  return cpus.map((c) => prstatusNote(c.id, c.regs));
}
