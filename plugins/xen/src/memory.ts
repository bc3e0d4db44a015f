/**
 * A crashed Xen domain's memory as a MemorySource: guest-physical RAM ranges from the helper's layout
 * (PV: valid p2m entries; PVH/HVM: populated gfns), reads in bounded batches through the helper.
 *
 * - read():     the asynchronous helper; page-aligned requests land straight in the caller's buffer,
 *               at most `batchPages` pages per helper request.
 * - readSync(): a second, synchronous helper (FIFOs, blocking reads) behind a small page cache — the
 *               Linux plugin's page-table walks and kernel-structure reads are many small reads.
 * - Released ranges read as zero (the contract), whatever Xen would still map.
 * - PV page-table pages are canonicalised by the helper (machine frames → guest pfns) unless
 *   `rawPageTables` is set, so the dump reads like any x86-64 guest's.
 */
import { inRanges, PAGE_SIZE, type ElfNote, type MemorySource, type PhysRange } from '@vicover/core';
import { VcvError } from '@vicover/errors';
import type { HelperClient, SyncHelper } from './helper.js';

/** What the helper's `open` answers. */
export interface DomainLayout {
  readonly domid: number;
  readonly translated: boolean;
  readonly vcpus: number;
  readonly nrPages: number;
  readonly maxMemKiB: number;
  readonly crashed: number;
  readonly shutdown: number;
  readonly shutdownReason: number;
  readonly dying: number;
  readonly freePages: number;
  readonly layoutSource: string;
  readonly layoutSeconds: number;
  readonly pfns: number;
  readonly populated: number;
  /** [startPfn, endPfn) runs of RAM. */
  readonly ranges: readonly (readonly [number, number])[];
}

export interface XenMemoryOptions {
  readonly batchPages: number;
  /** Pages kept for readSync (LRU; default 4096 = 16 MiB). */
  readonly cachePages?: number;
  /** Pages fetched per readSync cache miss (aligned window; default 32). */
  readonly windowPages?: number;
  /** Do not canonicalise PV page tables (byte-exact machine-frame contents, e.g. to compare with xl dump-core). */
  readonly rawPageTables?: boolean;
  readonly description?: string;
}

export class XenMemorySource implements MemorySource {
  readonly ranges: readonly PhysRange[];
  readonly maxPfn: number;
  readonly notes: readonly ElfNote[] = [];
  readonly description: string;
  /** Released pfn runs (sorted, merged): they read as zero. */
  private readonly released: PhysRange[] = [];
  private readonly cache = new Map<number, Buffer>();
  private readonly cachePages: number;
  private readonly windowPages: number;
  private readonly flags: number;
  private closed = false;
  /** What the source did, for the report: helper requests, pages, seconds (async and synchronous). */
  readonly stats = { asyncRequests: 0, asyncPages: 0, asyncSeconds: 0, syncRequests: 0, syncPages: 0, syncSeconds: 0, cacheHits: 0, zeroFilledPages: 0, pageTablePages: 0, findRequests: 0, findPages: 0, findSeconds: 0 };

  constructor(
    readonly layout: DomainLayout,
    private readonly async: HelperClient,
    private readonly sync: () => SyncHelper,
    private readonly o: XenMemoryOptions,
  ) {
    this.ranges = layout.ranges.map(([s, e]) => ({ start: s * PAGE_SIZE, end: e * PAGE_SIZE }));
    const last = layout.ranges[layout.ranges.length - 1];
    this.maxPfn = last ? last[1] : 0;
    this.cachePages = o.cachePages ?? 4096;
    this.windowPages = o.windowPages ?? 32;
    this.flags = !layout.translated && !o.rawPageTables ? 1 : 0;
    this.description =
      o.description ??
      `xen domain ${layout.domid} (${layout.translated ? 'translated: PVH/HVM' : 'PV, p2m from ' + layout.layoutSource}), ${layout.populated} pages in ${layout.ranges.length} range(s)`;
  }

  private check(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    if (this.closed) throw new VcvError('VCV_ERR_BACKEND', 'xen: the memory source is closed');
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || !Number.isSafeInteger(offset) || gpa < 0 || length < 0 || offset < 0 || offset + length > buf.length) {
      throw new VcvError('VCV_ERR_MEMORY_RANGE', `bad read request gpa=${gpa} offset=${offset} length=${length}`, { gpa, length });
    }
    if (length > 0 && !this.covered(gpa, length)) {
      throw new VcvError('VCV_ERR_MEMORY_RANGE', `guest-physical [0x${gpa.toString(16)}, +${length}) is not RAM of xen domain ${this.layout.domid}`, { gpa, length });
    }
  }

  /** Inside the RAM ranges, possibly spanning touching ranges (runs are maximal, so: one range). */
  private covered(gpa: number, length: number): boolean {
    return inRanges(this.ranges, gpa, length);
  }

  /** Zero the parts of [gpa, gpa+length) that were released, in buf at offset. */
  private zeroReleased(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    const end = gpa + length;
    for (const r of this.released) {
      if (r.end <= gpa) continue;
      if (r.start >= end) break;
      const a = Math.max(r.start, gpa);
      const b = Math.min(r.end, end);
      buf.fill(0, offset + (a - gpa), offset + (b - gpa));
    }
  }

  async read(gpa: number, buf: Uint8Array, offset: number, length: number): Promise<void> {
    this.check(gpa, buf, offset, length);
    if (length === 0) return;
    const first = Math.floor(gpa / PAGE_SIZE);
    const last = Math.ceil((gpa + length) / PAGE_SIZE);
    const aligned = gpa % PAGE_SIZE === 0 && length % PAGE_SIZE === 0;
    const batch = this.o.batchPages;
    for (let p = first; p < last; p += batch) {
      const n = Math.min(batch, last - p);
      const t0 = performance.now();
      if (aligned) {
        const r = await this.async.request<{ zeroFilled: number; pageTables: number }>(`read ${p} ${n} ${this.flags}`, { buf, offset: offset + (p - first) * PAGE_SIZE, length: n * PAGE_SIZE });
        this.count(r.json, n, t0, false);
      } else {
        const tmp = Buffer.allocUnsafe(n * PAGE_SIZE);
        const r = await this.async.request<{ zeroFilled: number; pageTables: number }>(`read ${p} ${n} ${this.flags}`, { buf: tmp, offset: 0, length: tmp.length });
        this.count(r.json, n, t0, false);
        const lo = Math.max(gpa, p * PAGE_SIZE);
        const hi = Math.min(gpa + length, (p + n) * PAGE_SIZE);
        tmp.copy(buf as Buffer, offset + (lo - gpa), lo - p * PAGE_SIZE, hi - p * PAGE_SIZE);
      }
    }
    this.zeroReleased(gpa, buf, offset, length);
  }

  /**
   * The helper's `find`: pages are looked at where they are mapped, in dom0 — only the hits come back
   * (a read of the same pages copies 4 KiB each through the pipe). At most 65536 pages per request.
   */
  async findInPages(start: number, end: number, needle: Uint8Array, pageOffsets: readonly number[], max: number): Promise<{ hits: number[]; truncated: boolean }> {
    const buf = Buffer.alloc(1);
    this.check(start, buf, 0, 0);
    if (start % PAGE_SIZE || end % PAGE_SIZE || end < start || !this.covered(start, end - start)) {
      throw new VcvError('VCV_ERR_MEMORY_RANGE', `find: [0x${start.toString(16)}, 0x${end.toString(16)}) is not page-aligned RAM of xen domain ${this.layout.domid}`, { start, end });
    }
    if (needle.length < 1 || needle.length > 32 || pageOffsets.length < 1 || pageOffsets.length > 8 || pageOffsets.some((o) => !Number.isInteger(o) || o < 0 || o + needle.length > PAGE_SIZE)) {
      throw new VcvError('VCV_ERR_INTERNAL', 'find: 1..32 needle bytes at 1..8 page offsets');
    }
    const cap = Math.max(1, Math.min(1024, Math.floor(max)));
    const hex = Buffer.from(needle).toString('hex');
    const hits: number[] = [];
    const step = 65536;
    for (let p = start / PAGE_SIZE; p < end / PAGE_SIZE; p += step) {
      const n = Math.min(step, end / PAGE_SIZE - p);
      const t0 = performance.now();
      const r = await this.async.request<{ pages: number; truncated: boolean; hits: number[] }>(`find ${p} ${n} ${hex} ${pageOffsets.join(',')} ${cap - hits.length}`);
      const st = this.stats;
      st.findRequests++;
      st.findPages += n;
      st.findSeconds += (performance.now() - t0) / 1000;
      for (const gpa of r.json.hits) if (!this.isReleased(gpa)) hits.push(gpa);
      if (r.json.truncated) return { hits, truncated: true };
      if (hits.length >= cap) return { hits, truncated: p + n < end / PAGE_SIZE };
    }
    return { hits, truncated: false };
  }

  private isReleased(gpa: number): boolean {
    return this.released.some((r) => gpa >= r.start && gpa < r.end);
  }

  private count(j: { zeroFilled: number; pageTables: number }, pages: number, t0: number, sync: boolean): void {
    const st = this.stats;
    st.zeroFilledPages += j.zeroFilled ?? 0;
    st.pageTablePages += j.pageTables ?? 0;
    const dt = (performance.now() - t0) / 1000;
    if (sync) {
      st.syncRequests++;
      st.syncPages += pages;
      st.syncSeconds += dt;
    } else {
      st.asyncRequests++;
      st.asyncPages += pages;
      st.asyncSeconds += dt;
    }
  }

  /** One synchronous helper read of `n` pages from pfn `p` into buf. */
  private syncRead(p: number, n: number, buf: Buffer): void {
    const t0 = performance.now();
    const r = this.sync().request<{ zeroFilled: number; pageTables: number }>(`read ${p} ${n} ${this.flags}`, { buf, offset: 0, length: n * PAGE_SIZE });
    this.count(r.json, n, t0, true);
  }

  readSync(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    this.check(gpa, buf, offset, length);
    if (length === 0) return;
    const first = Math.floor(gpa / PAGE_SIZE);
    const last = Math.ceil((gpa + length) / PAGE_SIZE);
    if (last - first > 16) {
      // Large reads bypass the cache: one request per batch.
      const tmp = Buffer.allocUnsafe(Math.min(this.o.batchPages, last - first) * PAGE_SIZE);
      for (let p = first; p < last; p += this.o.batchPages) {
        const n = Math.min(this.o.batchPages, last - p);
        this.syncRead(p, n, tmp);
        const lo = Math.max(gpa, p * PAGE_SIZE);
        const hi = Math.min(gpa + length, (p + n) * PAGE_SIZE);
        tmp.copy(buf as Buffer, offset + (lo - gpa), lo - p * PAGE_SIZE, hi - p * PAGE_SIZE);
      }
    } else {
      for (let p = first; p < last; p++) {
        const page = this.page(p);
        const lo = Math.max(gpa, p * PAGE_SIZE);
        const hi = Math.min(gpa + length, (p + 1) * PAGE_SIZE);
        page.copy(buf as Buffer, offset + (lo - gpa), lo - p * PAGE_SIZE, hi - p * PAGE_SIZE);
      }
    }
    this.zeroReleased(gpa, buf, offset, length);
  }

  /**
   * A page for readSync, from the cache or — on a miss — fetched with its aligned window of
   * `windowPages` pages in one helper request (a synchronous round trip costs far more than the copy:
   * every request maps frames, and mapping is a hypercall; sequential small reads come in order).
   */
  private page(pfn: number): Buffer {
    const hit = this.cache.get(pfn);
    if (hit) {
      this.cache.delete(pfn);
      this.cache.set(pfn, hit);
      this.stats.cacheHits++;
      return hit;
    }
    const w = this.windowPages;
    let lo = Math.floor(pfn / w) * w;
    let hi = lo + w;
    // Stay inside the RAM range holding pfn (the helper zero-fills holes, but ranges are the contract).
    const r = this.ranges.find((x) => pfn * PAGE_SIZE >= x.start && pfn * PAGE_SIZE < x.end)!;
    lo = Math.max(lo, r.start / PAGE_SIZE);
    hi = Math.min(hi, r.end / PAGE_SIZE);
    const win = Buffer.allocUnsafe((hi - lo) * PAGE_SIZE);
    this.syncRead(lo, hi - lo, win);
    for (let p = lo; p < hi; p++) {
      if (this.cache.has(p)) this.cache.delete(p);
      this.cache.set(p, win.subarray((p - lo) * PAGE_SIZE, (p - lo + 1) * PAGE_SIZE));
    }
    while (this.cache.size > this.cachePages) this.cache.delete(this.cache.keys().next().value as number);
    return win.subarray((pfn - lo) * PAGE_SIZE, (pfn - lo + 1) * PAGE_SIZE);
  }

  /** The backend tells the source a range was given back to Xen. */
  markReleased(range: PhysRange): void {
    for (let p = range.start / PAGE_SIZE; p < range.end / PAGE_SIZE; p++) this.cache.delete(p);
    const all = [...this.released, range].sort((a, b) => a.start - b.start);
    const merged: PhysRange[] = [];
    for (const r of all) {
      const prev = merged[merged.length - 1];
      if (prev && r.start <= prev.end) merged[merged.length - 1] = { start: prev.start, end: Math.max(prev.end, r.end) };
      else merged.push(r);
    }
    this.released.splice(0, this.released.length, ...merged);
  }

  get releasedRanges(): readonly PhysRange[] {
    return this.released;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cache.clear();
  }
}
