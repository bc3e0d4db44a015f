/**
 * Finding VMCOREINFO. Sources, in order:
 *   1. the image's ELF note named VMCOREINFO (QEMU writes it with `-device vmcoreinfo` and the guest's
 *      qemu_fw_cfg; makedumpfile and kdump vmcores always carry it),
 *   2. text the user gives (a file, e.g. makedumpfile -g output or /sys/kernel/vmcoreinfo's note),
 *   3. a scan of guest RAM for the text. The kernel keeps it twice: in `vmcoreinfo_data` (a zeroed page,
 *      text at offset 0) and in `vmcoreinfo_note` (a page-aligned ELF note: 12-byte header,
 *      "VMCOREINFO\0" padded to 12, then the text at offset 24). The scan reads RAM in large blocks
 *      (the start of each range first, see scanOrder), looks for `OSRELEASE=` at page offsets 0 and 24,
 *      parses each hit up to its NUL, and stops at the first one that parses and passes `validate`
 *      (LinuxKernel.open checks it against the page tables and init_uts_ns). The total is capped.
 *      A source with `findInPages` (pages looked at where they are, e.g. by a helper that maps them)
 *      is asked for the hits instead of handing every page over: the same candidates in the same
 *      order, a fraction of the bytes moved.
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
  /**
   * Read size of the scan (default 1 MiB). Larger blocks do not read faster from a file, and the
   * block buffer is fresh memory whose first touch costs a page fault per 4 KiB: 8 MiB blocks made
   * the scan of a 4.5 GiB guest's RAM file 2–3× slower on the development VM (docs/performance.md).
   */
  readonly blockBytes?: number;
  /** Most candidates parsed+validated in a scan (default 64). */
  readonly maxCandidates?: number;
  /** Use the source's findInPages when it has one (default true); false: always read pages. */
  readonly inPlace?: boolean;
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
 * Read a block; when the source cannot give all of it (a kdump file's excluded pages are
 * VCV_ERR_PAGE_NOT_DUMPED), read it page by page and leave unreadable pages zero.
 */
async function readSkippingHoles(source: MemorySource, pos: number, buf: Buffer, len: number): Promise<void> {
  try {
    await source.read(pos, buf, 0, len);
    return;
  } catch (e) {
    if (!(e instanceof VcvError) || (e.code !== 'VCV_ERR_PAGE_NOT_DUMPED' && e.code !== 'VCV_ERR_MEMORY_RANGE')) throw e;
  }
  for (let off = 0; off < len; off += PAGE) {
    try {
      source.readSync(pos + off, buf, off, Math.min(PAGE, len - off));
    } catch (e) {
      if (!(e instanceof VcvError)) throw e;
      buf.fill(0, off, Math.min(off + PAGE, len));
    }
  }
}

/** Read up to `max` bytes at gpa, stopping before the first unreadable page; returns the length read. */
function readCandidate(source: MemorySource, gpa: number, out: Buffer, max: number): number {
  try {
    source.readSync(gpa, out, 0, max);
    return max;
  } catch (e) {
    if (!(e instanceof VcvError)) throw e;
  }
  let done = 0;
  while (done < max) {
    const n = Math.min(max - done, PAGE - ((gpa + done) % PAGE));
    try {
      source.readSync(gpa + done, out, done, n);
    } catch (e) {
      if (!(e instanceof VcvError)) throw e;
      break;
    }
    done += n;
  }
  return done;
}

/** Block size of a scan through MemorySource.findInPages (the pages are not copied out). */
export const FIND_BLOCK_BYTES = 64 * 1024 * 1024;

/** Bytes at the start of each RAM range scanned before the rest (see scanOrder). */
export const SCAN_PRIORITY_WINDOW = 64 * 1024 * 1024;

/** Where x86-64's ZONE_NORMAL begins: GFP_KERNEL allocations come from there when the guest has RAM above it. */
export const ZONE_NORMAL_START = 4 * 1024 * 1024 * 1024;

/**
 * The order RAM is scanned in: first the start of every range (of those above 4 GiB before those
 * below), then the rest of the ranges above 4 GiB, then the rest of those below, each in address
 * order. The kernel allocates both copies with
 * GFP_KERNEL early at boot (crash_save_vmcoreinfo_init, a subsys_initcall), when the buddy allocator
 * still hands out the low end of the highest zone: on the test guests they sit ~18 MiB into RAM
 * (≤ 3.5 GiB guests, ZONE_DMA32), ~9 MiB above 4 GiB (the 4–4.5 GiB pc guests) and 1–4.8 GiB above
 * it (the 12 GiB guest, depending on the boot: early boot had used more of ZONE_NORMAL) — after ~9 MiB
 * on the 4–4.5 GiB guests (the low window came first until 2026-11-29: 64 MiB more, ~25–40 ms of a
 * dump from the RAM file), and after 128 MiB of windows and 1 GiB of ZONE_NORMAL on the 12 GiB one,
 * not after all 3 GiB below the PCI hole as well. Only the order: every page is
 * scanned (up to the limit) wherever the copies are.
 */
export function scanOrder(ranges: readonly { start: number; end: number }[], window = SCAN_PRIORITY_WINDOW): { start: number; end: number }[] {
  const first = ranges.map((r) => ({ start: r.start, end: Math.min(r.end, r.start + window) }));
  const rest = ranges.filter((r) => r.end > r.start + window).map((r) => ({ start: r.start + window, end: r.end }));
  const isHigh = (r: { start: number }) => r.start >= ZONE_NORMAL_START;
  return [...first.filter(isHigh), ...first.filter((r) => !isHigh(r)), ...rest.filter(isHigh), ...rest.filter((r) => !isHigh(r))];
}

/** Page offsets where the kernel's copies start: vmcoreinfo_data (a page) and vmcoreinfo_note (12-byte header + "VMCOREINFO\0" padded to 12). */
export const CANDIDATE_OFFSETS = [0, 24] as const;

/**
 * Scan guest RAM for VMCOREINFO text: at page offsets 0 and 24 of every page (where the kernel's
 * two copies start), in `scanOrder`. Returns undefined when none passes (reasons appended to
 * `rejected`).
 */
export async function scanForVmcoreinfo(
  source: MemorySource,
  opts: FindVmcoreinfoOptions,
  rejected: string[] = [],
  onError?: (e: VcvError) => void,
): Promise<FoundVmcoreinfo | undefined> {
  const blockBytes = Math.max(64 * 1024, Math.floor(Math.min(opts.blockBytes ?? 1024 * 1024, 256 * 1024 * 1024) / PAGE) * PAGE);
  const maxScan = opts.maxScanBytes ?? 16 * 1024 * 1024 * 1024;
  const maxCandidates = opts.maxCandidates ?? 64;
  const find = opts.inPlace !== false && source.findInPages ? source.findInPages.bind(source) : undefined;
  // A source that looks at pages in place is asked for larger blocks (nothing is copied); still bounded.
  const step = find ? Math.max(blockBytes, FIND_BLOCK_BYTES) : blockBytes;
  const buf = find ? null : Buffer.allocUnsafeSlow(blockBytes);
  const cand = Buffer.allocUnsafeSlow(MAX_VMCOREINFO_BYTES);
  const one = Buffer.alloc(1);
  const n0 = NEEDLE[0]!;
  let scanned = 0;
  let candidates = 0;
  /** One hit of the needle at `gpa` (a page offset in CANDIDATE_OFFSETS): found, give up, or go on. */
  const consider = (gpa: number): FoundVmcoreinfo | 'stop' | undefined => {
    if (++candidates > maxCandidates) {
      rejected.push(`scan: more than ${maxCandidates} candidates, giving up`);
      return 'stop';
    }
    const range = source.ranges.find((r) => gpa >= r.start && gpa < r.end)!;
    const clen = readCandidate(source, gpa, cand, Math.min(cand.length, range.end - gpa));
    const nul = cand.subarray(0, clen).indexOf(0);
    if (nul < 0) {
      rejected.push(`scan at 0x${gpa.toString(16)}: text does not end within ${clen} bytes`);
      return undefined;
    }
    try {
      const info = Vmcoreinfo.parse(cand.subarray(0, nul), { origin: `RAM at 0x${gpa.toString(16)}` });
      accept(info, opts.validate);
      return { info, origin: 'scan', gpa, scannedBytes: scanned, rejected };
    } catch (e) {
      if (!(e instanceof VcvError)) throw e;
      onError?.(e);
      rejected.push(`scan at 0x${gpa.toString(16)}: ${reason(e)}`);
      return undefined;
    }
  };
  /** The byte before gpa is NUL (the note's name padding before the text), read from the source. */
  const nulBefore = (gpa: number): boolean => {
    try {
      source.readSync(gpa - 1, one, 0, 1);
    } catch (e) {
      if (!(e instanceof VcvError)) throw e;
      return false;
    }
    return one[0] === 0;
  };
  for (const w of scanOrder(source.ranges)) {
    // Whole pages only (ranges are page aligned).
    for (let pos = w.start; pos < w.end; ) {
      if (opts.signal?.aborted) throw new VcvError('VCV_ERR_ABORTED', 'VMCOREINFO scan cancelled', {});
      if (scanned >= maxScan) {
        rejected.push(`scan: stopped after ${scanned} bytes (limit ${maxScan})`);
        return undefined;
      }
      const len = Math.min(find ? step : blockBytes, w.end - pos, Math.ceil((maxScan - scanned) / PAGE) * PAGE);
      if (find) {
        // The hits in page order, as the read path below would meet them. More hits than candidates
        // may be left (some fail the NUL check): then this block is read the ordinary way.
        const r = await find(pos, pos + len, NEEDLE, CANDIDATE_OFFSETS, maxCandidates - candidates + 1);
        if (!r.truncated) {
          scanned += len;
          for (const gpa of r.hits) {
            if (gpa % PAGE !== 0 && !nulBefore(gpa)) continue;
            const f = consider(gpa);
            if (f === 'stop') return undefined;
            if (f) return { ...f, scannedBytes: scanned };
          }
          pos += len;
          continue;
        }
      }
      const rlen = Math.min(len, blockBytes);
      const b = buf ?? Buffer.allocUnsafeSlow(blockBytes);
      await readSkippingHoles(source, pos, b, rlen);
      scanned += rlen;
      for (let page = 0; page < rlen; page += PAGE) {
        for (const off of CANDIDATE_OFFSETS) {
          const at = page + off;
          if (b[at] !== n0 || at + NEEDLE.length > rlen || b.compare(NEEDLE, 0, NEEDLE.length, at, at + NEEDLE.length) !== 0) continue;
          if (off !== 0 && b[at - 1] !== 0) continue;
          const f = consider(pos + at);
          if (f === 'stop') return undefined;
          if (f) return { ...f, scannedBytes: scanned };
        }
      }
      pos += rlen;
    }
  }
  return undefined;
}
