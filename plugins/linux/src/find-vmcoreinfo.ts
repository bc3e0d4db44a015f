/**
 * Finding VMCOREINFO. Sources, in order:
 *   1. the image's ELF note named VMCOREINFO (QEMU writes it with `-device vmcoreinfo` and the guest's
 *      qemu_fw_cfg; makedumpfile and kdump vmcores always carry it),
 *   2. text the user gives (a file, e.g. makedumpfile -g output or /sys/kernel/vmcoreinfo's note),
 *   3. a scan of guest RAM for the text. The kernel keeps it twice: in `vmcoreinfo_data` (a zeroed page,
 *      text at offset 0) and in `vmcoreinfo_note` (an ELF note: 12-byte header, "VMCOREINFO\0" padded to
 *      12, then the text). The scan reads RAM in large blocks, looks for `OSRELEASE=` at the start of a
 *      page or after a NUL (both copies qualify), parses each hit up to its NUL, and stops at the first
 *      one that parses and passes `validate` (by default the caller checks it against the page tables:
 *      see LinuxKernel.open). The total scanned is capped.
 * Whatever the source, the result's `info.toNote()` is the VMCOREINFO note our dump carries.
 */
import * as fs from 'node:fs';
import type { MemorySource } from '@vicover/core';
import { VcvError, wrapError } from '@vicover/errors';
import { MAX_VMCOREINFO_BYTES, VMCOREINFO_NOTE_NAME, Vmcoreinfo } from './vmcoreinfo.js';

export type VmcoreinfoOrigin = 'note' | 'text' | 'file' | 'scan';

export interface FoundVmcoreinfo {
  readonly info: Vmcoreinfo;
  readonly origin: VmcoreinfoOrigin;
  /** Guest-physical address of the text (scan only). */
  readonly gpa?: number;
  /** Bytes of RAM read by the scan (0 when not scanned). */
  readonly scannedBytes: number;
  /** Why earlier candidates were rejected (source: reason), for the warning log. */
  readonly rejected: readonly string[];
}

export interface FindVmcoreinfoOptions {
  /** VMCOREINFO text given directly. */
  readonly text?: string;
  /** A file holding VMCOREINFO text. */
  readonly file?: string;
  /** Scan guest RAM when no other source works (default true). */
  readonly scan?: boolean;
  /** Cap on RAM bytes scanned (default 16 GiB). */
  readonly maxScanBytes?: number;
  /** Read size of the scan (default 8 MiB). */
  readonly blockBytes?: number;
  /** Most candidates parsed+validated in a scan (default 64). */
  readonly maxCandidates?: number;
  /** Throws (a VcvError) to reject a candidate; default accepts any that parses. */
  readonly validate?: (info: Vmcoreinfo) => void;
  readonly signal?: AbortSignal;
}

const NEEDLE = Buffer.from('OSRELEASE=', 'latin1');
const PAGE = 4096;

function reason(e: unknown): string {
  return e instanceof VcvError ? `${e.code}: ${e.message}` : String(e);
}

function accept(info: Vmcoreinfo, validate: ((i: Vmcoreinfo) => void) | undefined): void {
  validate?.(info);
}

/** Find VMCOREINFO for `source`. Throws VCV_ERR_VMCOREINFO_NOT_FOUND (with every rejection reason). */
export async function findVmcoreinfo(source: MemorySource, opts: FindVmcoreinfoOptions = {}): Promise<FoundVmcoreinfo> {
  const rejected: string[] = [];
  let lastError: VcvError | undefined;
  const tryInfo = (make: () => Vmcoreinfo, label: string): Vmcoreinfo | undefined => {
    try {
      const info = make();
      accept(info, opts.validate);
      return info;
    } catch (e) {
      if (!(e instanceof VcvError)) throw e;
      lastError = e;
      rejected.push(`${label}: ${reason(e)}`);
      return undefined;
    }
  };

  for (const note of source.notes) {
    if (note.name !== VMCOREINFO_NOTE_NAME) continue;
    const info = tryInfo(() => Vmcoreinfo.fromNote(note, 'ELF note'), 'ELF note');
    if (info) return { info, origin: 'note', scannedBytes: 0, rejected };
  }
  if (opts.text !== undefined) {
    const info = tryInfo(() => Vmcoreinfo.parse(opts.text!, { origin: 'given text' }), 'given text');
    if (info) return { info, origin: 'text', scannedBytes: 0, rejected };
  }
  if (opts.file !== undefined) {
    const file = opts.file;
    const info = tryInfo(() => {
      let text: string;
      try {
        const st = fs.statSync(file);
        if (st.size > MAX_VMCOREINFO_BYTES) {
          throw new VcvError('VCV_ERR_VMCOREINFO_INVALID', `VMCOREINFO file ${file} is ${st.size} bytes, more than ${MAX_VMCOREINFO_BYTES}`, { file });
        }
        text = fs.readFileSync(file, 'latin1');
      } catch (e) {
        throw wrapError(e, 'VCV_ERR_VMCOREINFO_NOT_FOUND', `cannot read VMCOREINFO file ${file}`, { file });
      }
      return Vmcoreinfo.parse(text, { origin: `file ${file}` });
    }, `file ${file}`);
    if (info) return { info, origin: 'file', scannedBytes: 0, rejected };
  }
  if (opts.scan !== false) {
    const found = await scanForVmcoreinfo(source, opts, rejected, (e) => (lastError = e));
    if (found) return found;
  }
  throw new VcvError(
    'VCV_ERR_VMCOREINFO_NOT_FOUND',
    rejected.length > 0
      ? `no usable VMCOREINFO: ${rejected.join('; ')}`
      : `no VMCOREINFO: the image has no VMCOREINFO note, none was given${opts.scan === false ? ' and scanning is off' : ', and none was found in guest RAM'}`,
    { rejected, lastCode: lastError?.code },
    lastError ? { cause: lastError } : undefined,
  );
}

/**
 * Scan guest RAM for VMCOREINFO text. Returns undefined when none passes (reasons appended to
 * `rejected`).
 */
export async function scanForVmcoreinfo(
  source: MemorySource,
  opts: FindVmcoreinfoOptions,
  rejected: string[] = [],
  onError?: (e: VcvError) => void,
): Promise<FoundVmcoreinfo | undefined> {
  const blockBytes = Math.max(64 * 1024, Math.min(opts.blockBytes ?? 8 * 1024 * 1024, 256 * 1024 * 1024));
  const maxScan = opts.maxScanBytes ?? 16 * 1024 * 1024 * 1024;
  const maxCandidates = opts.maxCandidates ?? 64;
  const overlap = NEEDLE.length - 1;
  const buf = Buffer.allocUnsafeSlow(blockBytes + overlap);
  const cand = Buffer.allocUnsafeSlow(MAX_VMCOREINFO_BYTES);
  let scanned = 0;
  let candidates = 0;
  for (const r of source.ranges) {
    for (let pos = r.start; pos < r.end; ) {
      if (opts.signal?.aborted) throw new VcvError('VCV_ERR_ABORTED', 'VMCOREINFO scan cancelled', {});
      if (scanned >= maxScan) {
        rejected.push(`scan: stopped after ${scanned} bytes (limit ${maxScan})`);
        return undefined;
      }
      const len = Math.min(blockBytes + overlap, r.end - pos, maxScan - scanned + overlap);
      await source.read(pos, buf, 0, len);
      scanned += Math.min(len, blockBytes);
      const view = buf.subarray(0, len);
      for (let at = view.indexOf(NEEDLE); at >= 0; at = view.indexOf(NEEDLE, at + 1)) {
        if (at >= blockBytes) break; // in the overlap: the next block sees it
        const gpa = pos + at;
        // Only the start of a page, or right after a NUL (the note's padded name), can start the text.
        if (gpa % PAGE !== 0 && (at === 0 || view[at - 1] !== 0)) continue;
        if (++candidates > maxCandidates) {
          rejected.push(`scan: more than ${maxCandidates} candidates, giving up`);
          return undefined;
        }
        const clen = Math.min(cand.length, r.end - gpa);
        source.readSync(gpa, cand, 0, clen);
        const nul = cand.subarray(0, clen).indexOf(0);
        if (nul < 0) {
          rejected.push(`scan at 0x${gpa.toString(16)}: text does not end within ${clen} bytes`);
          continue;
        }
        try {
          const info = Vmcoreinfo.parse(cand.subarray(0, nul), { origin: `RAM at 0x${gpa.toString(16)}` });
          accept(info, opts.validate);
          return { info, origin: 'scan', gpa, scannedBytes: scanned, rejected };
        } catch (e) {
          if (!(e instanceof VcvError)) throw e;
          onError?.(e);
          rejected.push(`scan at 0x${gpa.toString(16)}: ${reason(e)}`);
        }
      }
      pos += Math.min(blockBytes, r.end - pos);
    }
  }
  return undefined;
}
