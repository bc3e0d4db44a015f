/**
 * The session journal: a small JSON file next to the dump, rewritten atomically (tmp + fsync + rename +
 * fsync of the directory) after every durable chunk and every release. A daemon killed mid-dump reads it
 * on restart and continues: chunks marked durable are never written again, chunks marked released are
 * gone from the crashed VM, and no chunk is ever released before it is marked durable.
 */
import { promises as fsp, constants as C, readFileSync } from 'node:fs';
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

/** The per-chunk log next to the journal: one JSON line per durable or released chunk. */
export function logPathOf(file: string): string {
  return file.replace(/\.json$/, '') + '.log';
}

export type JournalEntry = { readonly durable: number; readonly writer: unknown } | { readonly released: number };

/**
 * Append one entry to the chunk log. `sync` makes it durable before returning (a durable chunk must be
 * on record before it is released); a release need not be (releasing twice is harmless).
 */
export async function appendJournal(file: string, entry: JournalEntry, sync: boolean): Promise<void> {
  const fh = await fsp.open(logPathOf(file), C.O_WRONLY | C.O_CREAT | C.O_APPEND, 0o600);
  try {
    await fh.write(JSON.stringify(entry) + '\n');
    if (sync) await fh.datasync();
  } finally {
    await fh.close();
  }
}

/**
 * Write the whole journal atomically (tmp + fsync + rename + fsync of the directory), then empty the
 * chunk log, whose entries the journal now holds. Used at the start and on state changes — not per chunk.
 */
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
  // Compaction: a crash between the rename and this truncate only leaves entries replayed twice.
  await fsp.truncate(logPathOf(file), 0).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/** Merge a journal's text with its chunk log (a torn last line — a crash mid-append — is ignored). */
export function parseJournal(text: string, log: string): Journal | null {
  let j: Journal;
  try {
    j = JSON.parse(text) as Journal;
    if (!j || j.journalVersion !== 1) return null;
  } catch {
    return null;
  }
  const durable = new Set(j.durable);
  const released = new Set(j.released);
  for (const line of log.split('\n')) {
    if (!line) continue;
    let e: Partial<{ durable: number; writer: unknown; released: number }>;
    try {
      e = JSON.parse(line);
    } catch {
      break;
    }
    if (typeof e.durable === 'number') {
      durable.add(e.durable);
      j.writer = e.writer;
    } else if (typeof e.released === 'number' && durable.has(e.released)) released.add(e.released);
  }
  j.durable = [...durable];
  j.released = [...released];
  return j;
}

export async function readJournal(file: string): Promise<Journal | null> {
  const text = await fsp.readFile(file, 'utf8').catch(() => null);
  if (text === null) return null;
  return parseJournal(text, await fsp.readFile(logPathOf(file), 'utf8').catch(() => ''));
}

export function readJournalSync(file: string): Journal | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  let log = '';
  try {
    log = readFileSync(logPathOf(file), 'utf8');
  } catch {
    /* no chunk log yet */
  }
  return parseJournal(text, log);
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
