/**
 * The content of a simulated guest's data pages: 4 KiB of seeded pseudo-random bytes (incompressible,
 * like the test guests' anonymous memory and files), stamped with the page's pfn and kind so every
 * page is distinct and a misplaced page is caught. The same function fills pages written into the RAM
 * file (small guests) and pages generated on read (large guests), so both read identically.
 */
import { Kind, PAGE, PB_PAGES, pageHasData, prng } from './plan.js';

const TAG = 0x4d534356; // 'VCSM'

export class PageContent {
  private readonly template: Buffer;

  constructor(seed: number) {
    const rnd = prng(seed ^ 0x5eed);
    this.template = Buffer.alloc(PAGE);
    for (let i = 0; i < PAGE; i += 4) this.template.writeUInt32LE((rnd() * 2 ** 32) >>> 0, i);
  }

  /** Stamp page `pfn` (already holding the template) at `off` of `v` (a view of the whole buffer). */
  private stamp(v: DataView, off: number, pfn: number, kind: number): void {
    v.setUint32(off, pfn % 2 ** 32, true);
    v.setUint32(off + 4, Math.floor(pfn / 2 ** 32), true);
    v.setUint32(off + 8, TAG, true);
    v.setUint32(off + 12, kind, true);
  }

  /**
   * Fill whole pages [pfn, pfn + n) of one pageblock of `kind` into `buf` at `off` (page aligned):
   * data pages get content, the others zeros.
   */
  fillPageblockPages(buf: Uint8Array, off: number, kind: number, pfn: number, n: number): void {
    const first = pfn % PB_PAGES;
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    if (kind === Kind.USER_THP || kind === Kind.USER_4K || kind === Kind.CACHE) {
      const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
      b.fill(this.template, off, off + n * PAGE);
      for (let i = 0; i < n; i++) this.stamp(v, off + i * PAGE, pfn + i, kind);
      return;
    }
    if (kind !== Kind.KERNEL) {
      buf.fill(0, off, off + n * PAGE);
      return;
    }
    for (let i = 0; i < n; i++) {
      const o = off + i * PAGE;
      if (pageHasData(kind, first + i)) {
        buf.set(this.template, o);
        this.stamp(v, o, pfn + i, kind);
      } else buf.fill(0, o, o + PAGE);
    }
  }

  /** One data page for `pfn` (for the kernel image's text, written at generation). */
  page(pfn: number, kind: number): Buffer {
    const b = Buffer.from(this.template);
    this.stamp(new DataView(b.buffer, b.byteOffset, b.length), 0, pfn, kind);
    return b;
  }
}
