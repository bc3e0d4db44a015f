/**
 * A simulated VM's RAM as a MemorySource: the sparse RAM file for what it holds (kernel structures,
 * struct pages, and every data page of `written` guests), page contents generated on read for the
 * data pages of `generated` guests (the same bytes a `written` guest has in its file), and zeros for
 * ranges the VM has given back (like a punched hole in a QEMU RAM file).
 *
 * Reads are positional, into the caller's buffer; nothing is allocated per read or kept per page.
 */
import * as fs from 'node:fs';
import type { ElfNote, MemorySource, PhysRange } from '@vicover/core';
import { VcvError, wrapError } from '@vicover/errors';
import { vmcoreinfoNote } from '@vicover/dumpfmt';
import { pageLayoutFromVmcoreinfo, Vmcoreinfo } from '@vicover/plugin-linux';
import { buildTemplates, type StructPageTemplates } from './structpages.js';
import { PageContent } from './content.js';
import { Kind, PAGE, PB_BYTES, PB_PAGES } from './plan.js';

/** Pages per memory section (SECTION_SIZE_BITS 27). */
const SECTION_PAGES = 32768;
import type { GuestImage } from './image.js';

/** Reads at least this large generate their content on a later turn of the event loop. */
const DEFER_BYTES = 256 * 1024;

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function preadAsync(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

export class SimGuestMemory implements MemorySource {
  readonly ranges: readonly PhysRange[];
  readonly maxPfn: number;
  readonly notes: readonly ElfNote[];
  readonly description: string;
  private fd: number;
  private readonly kinds: Uint8Array;
  private readonly released: Uint8Array;
  private readonly content: PageContent;
  private readonly fromFile: boolean;
  private readonly ramBytes: number;
  /** Where each section's struct pages are (null: read them from the file like everything else). */
  private readonly memmap: readonly number[] | null;
  /** The struct pages of each pageblock kind, exactly as the generator wrote them. */
  private readonly templates: StructPageTemplates | null;
  private scratch: Buffer | null = null;
  private readonly memmapBytes: number;
  private readonly pbStructBytes: number;
  private readonly pbPerSection: number;

  constructor(
    readonly image: GuestImage,
    opts: { vmcoreinfoNote?: boolean; released?: Uint8Array } = {},
  ) {
    this.ramBytes = image.spec.ramBytes;
    this.ranges = [{ start: 0, end: this.ramBytes }];
    this.maxPfn = this.ramBytes / PAGE;
    // Like QEMU's -device vmcoreinfo: the guest's VMCOREINFO note is known to the host.
    this.notes = opts.vmcoreinfoNote === false ? [] : [vmcoreinfoNote(image.meta.vmcoreinfo)];
    this.content = new PageContent(image.spec.seed);
    this.fromFile = image.spec.content === 'written';
    const size = image.meta.structPageSize ?? 64;
    this.pbPerSection = SECTION_PAGES / PB_PAGES;
    this.pbStructBytes = PB_PAGES * size;
    this.memmapBytes = SECTION_PAGES * size;
    // The struct page array follows from the plan: generate it (memcpy speed) rather than read it.
    if (Array.isArray(image.meta.memmap) && image.meta.vmemmap) {
      this.memmap = image.meta.memmap;
      const layout = pageLayoutFromVmcoreinfo(Vmcoreinfo.parse(image.meta.vmcoreinfo, { origin: 'simhost image' }));
      this.templates = buildTemplates(layout, BigInt(`0x${image.meta.vmemmap}`), image.spec.freeTails, image.spec.privateCacheEvery);
    } else {
      this.memmap = null;
      this.templates = null;
    }
    try {
      this.fd = fs.openSync(image.ramFile, 'r');
      this.kinds = new Uint8Array(fs.readFileSync(image.planFile));
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_BACKEND', `simhost: cannot open the simulated RAM file ${image.ramFile}`, { file: image.ramFile });
    }
    if (this.kinds.length * PB_BYTES !== this.ramBytes) {
      throw new VcvError('VCV_ERR_BACKEND', `simhost: ${image.planFile} does not match the RAM size`, { file: image.planFile });
    }
    this.released = opts.released ?? new Uint8Array(this.kinds.length);
    if (this.released.length !== this.kinds.length) throw new VcvError('VCV_ERR_INTERNAL', 'simhost: released map does not match the plan');
    this.description = `SIMULATED guest RAM ${image.ramFile} (${image.spec.content === 'written' ? 'pages written in the file' : 'data pages generated on read'})`;
  }

  private check(gpa: number, length: number): void {
    if (!(Number.isSafeInteger(gpa) && gpa >= 0 && Number.isSafeInteger(length) && length >= 0 && gpa + length <= this.ramBytes)) {
      throw new VcvError('VCV_ERR_MEMORY_RANGE', `guest-physical 0x${Math.max(0, gpa).toString(16)} (+${length}) is outside the simulated RAM`, { gpa, length });
    }
  }

  /**
   * Fill [gpa, gpa+len) of buf at off; calls `file(pos, off, len)` for spans that come from the file
   * (coalesced), fills the rest itself: released ranges and holes with zeros, data pages of
   * `generated` guests with their content.
   */
  private compose(gpa: number, buf: Uint8Array, off: number, len: number, file: (pos: number, off: number, len: number) => void): void {
    const end = gpa + len;
    let runPos = -1;
    let runOff = 0;
    let runEnd = -1;
    const fromFile = (a: number, z: number) => {
      if (runPos >= 0 && runEnd === a) {
        runEnd = z;
        return;
      }
      flush();
      runPos = a;
      runEnd = z;
      runOff = off + (a - gpa);
    };
    const flush = () => {
      if (runPos >= 0) file(runPos, runOff, runEnd - runPos);
      runPos = -1;
    };
    const zero = (a: number, z: number) => buf.fill(0, off + (a - gpa), off + (z - gpa));
    let a = gpa;
    while (a < end) {
      const pb = Math.floor(a / PB_BYTES);
      const z = Math.min(end, (pb + 1) * PB_BYTES);
      const kind = this.kinds[pb]!;
      if (this.released[pb]) zero(a, z);
      else if (kind === Kind.KREGION) this.kernelRegion(buf, off, gpa, a, z, fromFile, flush);
      else if (this.fromFile) fromFile(a, z);
      else {
        flush();
        this.generate(buf, off + (a - gpa), a, z - a, kind);
      }
      a = z;
    }
    flush();
  }

  /**
   * Kernel structures come from the file — except the struct page array, which the plan determines
   * completely: it is generated from the same templates the generator wrote to the file (identical
   * bytes, at memcpy speed; the tails it left as holes are zeros here too).
   */
  private kernelRegion(buf: Uint8Array, off: number, gpa: number, a: number, z: number, fromFile: (a: number, z: number) => void, flush: () => void): void {
    const mm = this.memmap;
    const t = this.templates;
    if (!mm || !t) return fromFile(a, z);
    // First memmap ending after a (bases ascend).
    let lo = 0;
    let hi = mm.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (mm[mid]! + this.memmapBytes <= a) lo = mid + 1;
      else hi = mid;
    }
    let x = a;
    for (let nr = lo; nr < mm.length && x < z; nr++) {
      const base = mm[nr]!;
      if (base >= z) break;
      if (x < base) {
        fromFile(x, base);
        x = base;
      }
      flush();
      const mEnd = Math.min(z, base + this.memmapBytes);
      while (x < mEnd) {
        const q = Math.floor((x - base) / this.pbStructBytes);
        const pieceStart = base + q * this.pbStructBytes;
        const pieceEnd = Math.min(mEnd, pieceStart + this.pbStructBytes);
        const pb = nr * this.pbPerSection + q;
        const kind = this.kinds[pb]!;
        const o = off + (x - gpa);
        const tpl = t.byKind[kind]!;
        if (x === pieceStart && pieceEnd === pieceStart + this.pbStructBytes) {
          buf.set(tpl, o);
          if (kind === Kind.USER_THP) t.patchThp(asBuffer(buf), o, pb * PB_PAGES);
        } else if (kind !== Kind.USER_THP) {
          buf.set(tpl.subarray(x - pieceStart, pieceEnd - pieceStart), o);
        } else {
          const s = (this.scratch ??= Buffer.alloc(this.pbStructBytes));
          tpl.copy(s);
          if (kind === Kind.USER_THP) t.patchThp(s, 0, pb * PB_PAGES);
          buf.set(s.subarray(x - pieceStart, pieceEnd - pieceStart), o);
        }
        x = pieceEnd;
      }
    }
    if (x < z) fromFile(x, z);
  }

  /** Generated content for [a, a+n) inside one pageblock (any alignment). */
  private generate(buf: Uint8Array, o: number, a: number, n: number, kind: number): void {
    const firstPfn = Math.floor(a / PAGE);
    const lastPfn = Math.ceil((a + n) / PAGE);
    if (a % PAGE === 0 && n % PAGE === 0) {
      this.content.fillPageblockPages(buf, o, kind, firstPfn, lastPfn - firstPfn);
      return;
    }
    const page = Buffer.alloc(PAGE);
    for (let pfn = firstPfn; pfn < lastPfn; pfn++) {
      this.content.fillPageblockPages(page, 0, kind, pfn, 1);
      const s = Math.max(a, pfn * PAGE);
      const e = Math.min(a + n, (pfn + 1) * PAGE);
      buf.set(page.subarray(s - pfn * PAGE, e - pfn * PAGE), o + (s - a));
    }
  }

  readSync(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    this.check(gpa, length);
    this.compose(gpa, buf, offset, length, (pos, off, len) => {
      let done = 0;
      while (done < len) {
        const n = fs.readSync(this.fd, buf, off + done, len - done, pos + done);
        if (n <= 0) {
          buf.fill(0, off + done, off + len);
          break;
        }
        done += n;
      }
    });
  }

  async read(gpa: number, buf: Uint8Array, offset: number, length: number): Promise<void> {
    this.check(gpa, length);
    // Generating content is CPU work: do it on the next turn, so a caller that reads ahead (the dump
    // writer's prefetch) overlaps it with its own waits, as a real read in the thread pool would.
    if (length >= DEFER_BYTES && !this.fromFile) await new Promise((r) => setImmediate(r));
    const reads: Promise<void>[] = [];
    this.compose(gpa, buf, offset, length, (pos, off, len) => {
      reads.push(
        (async () => {
          let done = 0;
          while (done < len) {
            const n = await preadAsync(this.fd, buf, off + done, len - done, pos + done);
            if (n <= 0) {
              buf.fill(0, off + done, off + len);
              break;
            }
            done += n;
          }
        })(),
      );
    });
    if (reads.length === 1) await reads[0];
    else if (reads.length > 1) await Promise.all(reads);
  }

  async close(): Promise<void> {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Mark [start, end) (2 MiB aligned) of a VM's RAM as given back in its released map (one byte per
 * 2 MiB): it reads as zero from then on. Returns the bytes newly released.
 */
export function releaseRange(released: Uint8Array, range: PhysRange): number {
  if (range.start % PB_BYTES !== 0 || range.end % PB_BYTES !== 0 || range.start < 0 || range.end > released.length * PB_BYTES || range.end < range.start) {
    throw new VcvError('VCV_ERR_BACKEND', `simhost: cannot release [0x${range.start.toString(16)}, 0x${range.end.toString(16)}): not 2 MiB aligned inside RAM`);
  }
  let n = 0;
  for (let pb = range.start / PB_BYTES; pb < range.end / PB_BYTES; pb++) {
    if (!released[pb]) {
      released[pb] = 1;
      n++;
    }
  }
  return n * PB_BYTES;
}
