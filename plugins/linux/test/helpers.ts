// Test helpers: a stand-in for the CrashSession fields the plugin uses, and a full page set.
import { Bitmap } from '@vicover/dumpfmt';
import type { ElfNote, MemorySource, PageSet } from '@vicover/core';
import type { LinuxSessionLike } from '../src/plugin.js';

export interface FakeSession {
  session: LinuxSessionLike;
  warnings: { code: string; message: string; plugin?: string }[];
  notes: ElfNote[];
  triage: Record<string, unknown> | undefined;
}

/** The parts of a CrashSession the plugin uses, recorded for assertions. */
export function fakeSession(memory: MemorySource): FakeSession {
  const out: FakeSession = { session: undefined as never, warnings: [], notes: [], triage: undefined };
  const log = { info() {}, warn() {}, debug() {}, error() {}, child() { return log; } };
  out.session = {
    memory,
    data: new Map(),
    addNote: (n: ElfNote) => out.notes.push(n),
    dumpInfo: { utsname: { machine: 'x86_64' }, physBase: 0n },
    setTriage: (t: Record<string, unknown>) => (out.triage = t),
    warn: (code: string, message: string, p?: string) => out.warnings.push({ code, message, ...(p ? { plugin: p } : {}) }),
    log,
    signal: new AbortController().signal,
  } as unknown as LinuxSessionLike;
  return out;
}

export function fullPageSet(memory: MemorySource, dumpLevel = 31): PageSet {
  const ram = new Bitmap(memory.maxPfn);
  const dump = new Bitmap(memory.maxPfn);
  for (const r of memory.ranges) {
    ram.setRange(r.start / 4096, r.end / 4096);
    dump.setRange(r.start / 4096, r.end / 4096);
  }
  return { maxPfn: memory.maxPfn, ram, dump, excluded: { zero: 0, cache: 0, privateCache: 0, user: 0, free: 0, offline: 0 }, excludeZero: true, dumpLevel, notes: {} };
}

