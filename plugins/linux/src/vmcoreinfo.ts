/**
 * VMCOREINFO: the kernel's own description of its layout, `KEY=value` lines
 * (kernel/vmcore_info.c, arch/x86/kernel/vmcore_info_64.c; grammar as makedumpfile reads it):
 *
 *   OSRELEASE=6.1.0-56-amd64        PAGESIZE=4096 (decimal)       BUILD-ID=hex
 *   SYMBOL(name)=hex (no 0x)        SIZE(type)=decimal            OFFSET(type.member)=decimal
 *   LENGTH(name)=decimal            NUMBER(name)=decimal, may be negative (phys_base under KASLR,
 *                                    PAGE_BUDDY_MAPCOUNT_VALUE)
 *   KERNELOFFSET=hex (no 0x)        CRASHTIME=decimal (only on the kexec path)   CONFIG_X=y
 *
 * Parsing keeps every line; typed accessors parse on demand and throw VCV_ERR_VMCOREINFO_INVALID
 * naming the key when it is missing or malformed. Nothing about a kernel is assumed here.
 */
import type { ElfNote } from '@vicover/core';
import { VcvError } from '@vicover/errors';

/** Largest VMCOREINFO text accepted (the kernel's is one page; QEMU's device allows < 1 MiB). */
export const MAX_VMCOREINFO_BYTES = 64 * 1024;
/** The ELF note name and type of VMCOREINFO (type 0, as the kernel writes it). */
export const VMCOREINFO_NOTE_NAME = 'VMCOREINFO';
export const VMCOREINFO_NOTE_TYPE = 0;

const KEY_RE = /^[A-Za-z0-9_()./-]+$/;
const HEX_RE = /^(?:0x)?([0-9a-fA-F]{1,16})$/;
const DEC_RE = /^[0-9]{1,15}$/;
const SDEC_RE = /^-?[0-9]{1,20}$/;

function invalid(key: string, why: string, origin: string): VcvError {
  return new VcvError('VCV_ERR_VMCOREINFO_INVALID', `VMCOREINFO (${origin}): ${key} ${why}`, { key, origin });
}

export interface ParseOptions {
  /** Where the text came from, for messages: `note`, `file /tmp/x`, `scan at 0x3ff1000`. */
  readonly origin?: string;
}

export class Vmcoreinfo {
  /** The text exactly as it will go into our dump's VMCOREINFO note (every line ends with \n). */
  readonly text: string;
  readonly origin: string;
  private readonly entries: ReadonlyMap<string, string>;

  private constructor(text: string, entries: Map<string, string>, origin: string) {
    this.text = text;
    this.entries = entries;
    this.origin = origin;
  }

  /**
   * Parse VMCOREINFO text (a string, or bytes that may be NUL padded). Stops at the first NUL.
   * Requires OSRELEASE and PAGESIZE (as makedumpfile does); a line that is not `KEY=value` with a
   * printable key and value makes the text invalid (it is corrupt or not VMCOREINFO at all).
   */
  static parse(input: string | Uint8Array, opts: ParseOptions = {}): Vmcoreinfo {
    const origin = opts.origin ?? 'text';
    let text: string;
    if (typeof input === 'string') {
      const nul = input.indexOf('\0');
      text = nul >= 0 ? input.slice(0, nul) : input;
    } else {
      const nul = input.indexOf(0);
      const end = nul >= 0 ? nul : input.length;
      text = Buffer.from(input.buffer, input.byteOffset, end).toString('latin1');
    }
    if (text.length > MAX_VMCOREINFO_BYTES) {
      throw invalid('text', `is ${text.length} bytes, more than ${MAX_VMCOREINFO_BYTES}`, origin);
    }
    const entries = new Map<string, string>();
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const eq = line.indexOf('=');
      const key = eq > 0 ? line.slice(0, eq) : '';
      const value = eq > 0 ? line.slice(eq + 1) : '';
      // Printable ASCII only: a flipped byte in guest memory must not pass as a value.
      if (!KEY_RE.test(key) || !/^[\x20-\x7e]*$/.test(value)) {
        throw invalid(`line ${i + 1}`, `is not KEY=value: ${JSON.stringify(line.slice(0, 80))}`, origin);
      }
      if (!entries.has(key)) entries.set(key, value);
    }
    const info = new Vmcoreinfo(lines.length > 0 ? lines.join('\n') + '\n' : '', entries, origin);
    if (!info.has('OSRELEASE')) throw invalid('OSRELEASE', 'is missing', origin);
    const ps = info.pageSize;
    if (ps !== 4096) throw invalid('PAGESIZE', `is ${ps}; only 4096 (x86-64) is supported`, origin);
    return info;
  }

  /** Parse from an ELF note's descriptor. */
  static fromNote(note: ElfNote, origin = 'note'): Vmcoreinfo {
    return Vmcoreinfo.parse(note.desc, { origin });
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }
  raw(key: string): string | undefined {
    return this.entries.get(key);
  }
  keys(): string[] {
    return [...this.entries.keys()];
  }

  private need(key: string): string {
    const v = this.entries.get(key);
    if (v === undefined) throw invalid(key, 'is missing', this.origin);
    return v;
  }

  private hexOf(key: string, v: string): bigint {
    const m = HEX_RE.exec(v);
    if (!m) throw invalid(key, `is not hexadecimal: ${JSON.stringify(v)}`, this.origin);
    return BigInt('0x' + m[1]);
  }

  private decOf(key: string, v: string): number {
    if (!DEC_RE.test(v)) throw invalid(key, `is not a decimal number: ${JSON.stringify(v)}`, this.origin);
    const n = Number(v);
    if (n > 0x7fffffff) throw invalid(key, `is out of range: ${v}`, this.origin);
    return n;
  }

  private sdecOf(key: string, v: string): bigint {
    if (!SDEC_RE.test(v)) throw invalid(key, `is not a decimal number: ${JSON.stringify(v)}`, this.origin);
    const n = BigInt(v);
    if (n < -(1n << 63n) || n >= 1n << 64n) throw invalid(key, `is out of range: ${v}`, this.origin);
    return n;
  }

  get osrelease(): string {
    return this.need('OSRELEASE');
  }
  get pageSize(): number {
    return this.decOf('PAGESIZE', this.need('PAGESIZE'));
  }
  /** KERNELOFFSET (KASLR slide of the kernel image), or undefined when absent. */
  get kernelOffset(): bigint | undefined {
    const v = this.entries.get('KERNELOFFSET');
    return v === undefined ? undefined : this.hexOf('KERNELOFFSET', v);
  }

  /** SYMBOL(name): a kernel virtual address. */
  symbol(name: string): bigint {
    const key = `SYMBOL(${name})`;
    return this.hexOf(key, this.need(key));
  }
  optSymbol(name: string): bigint | undefined {
    const key = `SYMBOL(${name})`;
    const v = this.entries.get(key);
    return v === undefined ? undefined : this.hexOf(key, v);
  }
  /** SIZE(type), bytes. */
  size(name: string): number {
    const key = `SIZE(${name})`;
    return this.decOf(key, this.need(key));
  }
  optSize(name: string): number | undefined {
    const key = `SIZE(${name})`;
    const v = this.entries.get(key);
    return v === undefined ? undefined : this.decOf(key, v);
  }
  /** OFFSET(type.member), bytes. */
  offset(name: string): number {
    const key = `OFFSET(${name})`;
    return this.decOf(key, this.need(key));
  }
  optOffset(name: string): number | undefined {
    const key = `OFFSET(${name})`;
    const v = this.entries.get(key);
    return v === undefined ? undefined : this.decOf(key, v);
  }
  /** LENGTH(name): an array length. */
  length(name: string): number {
    const key = `LENGTH(${name})`;
    return this.decOf(key, this.need(key));
  }
  optLength(name: string): number | undefined {
    const key = `LENGTH(${name})`;
    const v = this.entries.get(key);
    return v === undefined ? undefined : this.decOf(key, v);
  }
  /** NUMBER(name) as a bigint (the full signed/unsigned 64-bit range). */
  numberBig(name: string): bigint {
    const key = `NUMBER(${name})`;
    return this.sdecOf(key, this.need(key));
  }
  optNumberBig(name: string): bigint | undefined {
    const key = `NUMBER(${name})`;
    const v = this.entries.get(key);
    return v === undefined ? undefined : this.sdecOf(key, v);
  }
  /** NUMBER(name) as a number; throws when it is not a safe integer (use numberBig for those). */
  number(name: string): number {
    const v = this.numberBig(name);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw invalid(`NUMBER(${name})`, `is too large for a plain number: ${v}`, this.origin);
    }
    return Number(v);
  }
  optNumber(name: string): number | undefined {
    return this.has(`NUMBER(${name})`) ? this.number(name) : undefined;
  }

  /** The VMCOREINFO ELF note our dump carries (name VMCOREINFO, type 0, desc = the text). */
  toNote(): ElfNote {
    return { name: VMCOREINFO_NOTE_NAME, type: VMCOREINFO_NOTE_TYPE, desc: Buffer.from(this.text, 'latin1') };
  }

  /** Kernel version as [major, minor, patch] from OSRELEASE (e.g. 6.1.0-56-amd64 → [6,1,0]), or undefined. */
  get kernelVersion(): readonly [number, number, number] | undefined {
    const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(this.osrelease);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
  }
}

/** Build VMCOREINFO text from entries (for synthetic guests and tests). */
export function formatVmcoreinfo(entries: Iterable<readonly [string, string | number | bigint]>): string {
  let out = '';
  for (const [k, v] of entries) {
    const s = typeof v === 'bigint' && k.startsWith('SYMBOL(') ? v.toString(16) : String(v);
    out += `${k}=${s}\n`;
  }
  return out;
}
