/**
 * The session journal: a small JSON file next to the dump, rewritten atomically (tmp + fsync + rename +
 * fsync of the directory) after every durable chunk and every release. A daemon killed mid-dump reads it
 * on restart and continues: chunks marked durable are never written again, chunks marked released are
 * gone from the crashed VM, and no chunk is ever released before it is marked durable.
 */
import { promises as fsp, constants as C } from 'node:fs';
import * as path from 'node:path';
import type { VmRef, CrashEvent } from './contracts.js';
import type { Mode } from './schema.js';

export interface Journal {
  readonly journalVersion: 1;
  readonly sessionId: string;
  readonly backend: string;
  readonly vm: VmRef;
  readonly event: CrashEvent;
  readonly mode: Mode;
  readonly dumpFile: string | null;
  readonly format: string;
  readonly chunkBytes: number;
  /** Address-order chunk ranges [start, end) and the order they are dumped in (empty until laid out). */
  readonly chunks: readonly { readonly start: number; readonly end: number; readonly selectedPages: number }[];
  readonly order: readonly number[];
  durable: number[];
  released: number[];
  /** The writer's checkpoint after the last durable chunk. */
  writer: unknown;
  /** captured: the crashed VM was captured, nothing dumped yet; dumping: chunks in progress. */
  state: 'captured' | 'dumping' | 'dumped' | 'done' | 'failed';
  /** CPU notes from capture (base64), so a crash captured by a daemon that then died is not lost. */
  cpuNotes?: { name: string; type: number; desc: string }[];
  /** Wall-clock ms when the session started (for reports after a resume). */
  readonly startedAt: number;
}

export async function writeJournal(file: string, j: Journal): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_TRUNC, 0o600);
  try {
    await fh.writeFile(JSON.stringify(j));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  const dir = await fsp.open(path.dirname(file), C.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export async function readJournal(file: string): Promise<Journal | null> {
  try {
    const j = JSON.parse(await fsp.readFile(file, 'utf8')) as Journal;
    return j && j.journalVersion === 1 ? j : null;
  } catch {
    return null;
  }
}

/** Sessions left unfinished under a dump directory (`<dir>/<session>/session.json`). */
export async function findUnfinished(dumpDir: string): Promise<{ dir: string; journal: Journal }[]> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dumpDir);
  } catch {
    return [];
  }
  const out: { dir: string; journal: Journal }[] = [];
  for (const e of entries.sort()) {
    const j = await readJournal(path.join(dumpDir, e, 'session.json'));
    if (j && (j.state === 'captured' || j.state === 'dumping' || j.state === 'dumped')) out.push({ dir: path.join(dumpDir, e), journal: j });
  }
  return out;
}
