/**
 * A synthetic x86-64 Linux guest: RAM with a kernel image mapping, a direct map, a vmemmap with
 * struct pages, a mem_section array, a printk ring buffer and VMCOREINFO — built from the same layout
 * knowledge the introspection modules read with (VMCOREINFO values of Debian's 6.1.0-56-amd64 by
 * default). For tests, benchmarks and the simulated host.
 *
 * Virtual layout (x86-64 defaults, KASLR-free unless offsets are given):
 *   kernel image   __START_KERNEL_map + 16 MiB + kernelOffset  → pa = va − __START_KERNEL_map + phys_base
 *   direct map     page_offset_base (0xffff888000000000 / 5-level 0xff11000000000000)   → pa 0…
 *   vmemmap        vmemmap_base     (0xffffea0000000000 / 5-level 0xffd4000000000000), 2 MiB pages
 */
import { VcvError } from '@vicover/errors';
import { PAGE_SIZE, SIZE_1G, SIZE_2M, START_KERNEL_MAP } from '../paging.js';
import { encodeStructPage, flagsOf, pageLayoutFromVmcoreinfo, type PageLayout, type StructPageFields } from '../page-layout.js';
import { SECTION_HAS_MEM_MAP, SECTION_MARKED_PRESENT } from '../mem-section.js';
import { Vmcoreinfo, VMCOREINFO_NOTE_NAME } from '../vmcoreinfo.js';
import { printkLayout, type PrintkLayout } from '../printk.js';
import { PhysAllocator, SyntheticMemory, type SyntheticRam } from './memory.js';
import { PageTableBuilder } from './pagetables.js';

/** SIZE/OFFSET/LENGTH/NUMBER lines of Debian's 6.1.0-56-amd64 VMCOREINFO (4-level; 5-level differs in two). */
export const LINUX_6_1_LAYOUT: readonly (readonly [string, string])[] = [
  ['OFFSET(uts_namespace.name)', '0'],
  ['LENGTH(mem_section)', '4096'],
  ['SIZE(mem_section)', '32'],
  ['OFFSET(mem_section.section_mem_map)', '0'],
  ['NUMBER(SECTION_SIZE_BITS)', '27'],
  ['NUMBER(MAX_PHYSMEM_BITS)', '46'],
  ['SIZE(page)', '64'],
  ['OFFSET(page.flags)', '0'],
  ['OFFSET(page._refcount)', '52'],
  ['OFFSET(page.mapping)', '24'],
  ['OFFSET(page.lru)', '8'],
  ['OFFSET(page._mapcount)', '48'],
  ['OFFSET(page.private)', '40'],
  ['OFFSET(page.compound_dtor)', '16'],
  ['OFFSET(page.compound_order)', '17'],
  ['OFFSET(page.compound_head)', '8'],
  ['LENGTH(zone.free_area)', '11'],
  ['SIZE(printk_ringbuffer)', '88'],
  ['OFFSET(printk_ringbuffer.desc_ring)', '0'],
  ['OFFSET(printk_ringbuffer.text_data_ring)', '48'],
  ['OFFSET(printk_ringbuffer.fail)', '80'],
  ['SIZE(prb_desc_ring)', '48'],
  ['OFFSET(prb_desc_ring.count_bits)', '0'],
  ['OFFSET(prb_desc_ring.descs)', '8'],
  ['OFFSET(prb_desc_ring.infos)', '16'],
  ['OFFSET(prb_desc_ring.head_id)', '24'],
  ['OFFSET(prb_desc_ring.tail_id)', '32'],
  ['SIZE(prb_desc)', '24'],
  ['OFFSET(prb_desc.state_var)', '0'],
  ['OFFSET(prb_desc.text_blk_lpos)', '8'],
  ['SIZE(prb_data_blk_lpos)', '16'],
  ['OFFSET(prb_data_blk_lpos.begin)', '0'],
  ['OFFSET(prb_data_blk_lpos.next)', '8'],
  ['SIZE(printk_info)', '88'],
  ['OFFSET(printk_info.seq)', '0'],
  ['OFFSET(printk_info.ts_nsec)', '8'],
  ['OFFSET(printk_info.text_len)', '16'],
  ['OFFSET(printk_info.caller_id)', '20'],
  ['OFFSET(printk_info.dev_info)', '24'],
  ['SIZE(prb_data_ring)', '32'],
  ['OFFSET(prb_data_ring.size_bits)', '0'],
  ['OFFSET(prb_data_ring.data)', '8'],
  ['OFFSET(prb_data_ring.head_lpos)', '16'],
  ['OFFSET(prb_data_ring.tail_lpos)', '24'],
  ['SIZE(atomic_long_t)', '8'],
  ['OFFSET(atomic_long_t.counter)', '0'],
  ['NUMBER(PG_lru)', '4'],
  ['NUMBER(PG_private)', '13'],
  ['NUMBER(PG_swapcache)', '10'],
  ['NUMBER(PG_swapbacked)', '19'],
  ['NUMBER(PG_slab)', '9'],
  ['NUMBER(PG_hwpoison)', '23'],
  ['NUMBER(PG_head_mask)', '65536'],
  ['NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)', '-129'],
  ['NUMBER(HUGETLB_PAGE_DTOR)', '2'],
  ['NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)', '-257'],
];

export interface SyntheticKernelOptions {
  /** RAM size in bytes, flat from GPA 0 (multiple of 2 MiB, ≥ 32 MiB). */
  readonly ramBytes: number;
  readonly levels?: 4 | 5;
  /** NUMBER(phys_base); the kernel image sits at physical 16 MiB + kernelOffset + physBase. */
  readonly physBase?: bigint;
  readonly kernelOffset?: bigint;
  readonly osrelease?: string;
  /** Replace or add VMCOREINFO lines (value undefined removes the line). */
  readonly vmcoreinfo?: Readonly<Record<string, string | undefined>>;
  /**
   * Initial struct page of every RAM pfn (default: a reserved-like page, _mapcount −1, _refcount 1);
   * null: none is written (the caller writes every struct page itself, e.g. for huge guests).
   */
  readonly defaultPage?: StructPageFields | null;
  /** Where guest RAM lives (default: a new in-memory SyntheticMemory covering [0, ramBytes)). */
  readonly memory?: SyntheticRam;
  /** printk ring: log2(descriptors) and log2(text bytes) (defaults 6, 13). */
  readonly printkCountBits?: number;
  readonly printkSizeBits?: number;
  /** Put the VMCOREINFO text in RAM (both copies, like the kernel) — default true. */
  readonly vmcoreinfoInRam?: boolean;
  /** Also carry VMCOREINFO as an ELF note on the memory source (default false). */
  readonly vmcoreinfoNote?: boolean;
  readonly smeMask?: bigint;
}

export interface SyntheticLogRecord {
  readonly text: string;
  readonly level?: number;
  readonly tsNsec?: bigint;
}

const PRB_DESC_FINALIZED = 2n;
const DESC_ID_MASK = (1n << 62n) - 1n;

export class SyntheticKernel {
  readonly mem: SyntheticRam;
  readonly alloc: PhysAllocator;
  readonly pt: PageTableBuilder;
  readonly info: Vmcoreinfo;
  readonly layout: PageLayout;
  readonly levels: 4 | 5;
  readonly directMap: bigint;
  readonly vmemmap: bigint;
  readonly imageVa: bigint;
  readonly imagePa: number;
  /** Physical address of the struct page array of each present section (index = section nr). */
  readonly sectionMemmapPa: number[] = [];
  /** Physical addresses of the two VMCOREINFO copies (text page, note page), when in RAM. */
  readonly vmcoreinfoPa: { text: number; note: number } | undefined;
  readonly symbols: Readonly<Record<string, bigint>>;
  readonly memSectionRootPa: number;
  readonly sectionArrayPa: number[];
  private readonly prb: { rbPa: number; descsPa: number; infosPa: number; dataPa: number; countBits: number; sizeBits: number; l: PrintkLayout };
  private logHeadId: bigint;
  private logTailId: bigint;
  private logHeadLpos = 0n;
  private logSeq = 0n;
  private logCount = 0;

  constructor(readonly opts: SyntheticKernelOptions) {
    const ram = opts.ramBytes;
    if (!Number.isSafeInteger(ram) || ram < 32 * 1024 * 1024 || ram % SIZE_2M !== 0) {
      throw new VcvError('VCV_ERR_INTERNAL', `synthetic RAM size ${ram} must be a multiple of 2 MiB and ≥ 32 MiB`, {});
    }
    this.levels = opts.levels ?? 4;
    const l5 = this.levels === 5;
    this.mem = opts.memory ?? new SyntheticMemory([{ start: 0, end: ram }]);
    const physBase = opts.physBase ?? 0n;
    const kernelOffset = opts.kernelOffset ?? 0n;
    this.directMap = l5 ? 0xff11000000000000n : 0xffff888000000000n;
    this.vmemmap = l5 ? 0xffd4000000000000n : 0xffffea0000000000n;
    // Kernel image: 8 MiB at START_KERNEL_MAP + 16 MiB + offset, mapped with 2 MiB pages.
    this.imageVa = START_KERNEL_MAP + 0x1000000n + kernelOffset;
    const imagePa = this.imageVa - START_KERNEL_MAP + physBase;
    const imageBytes = 4 * SIZE_2M;
    if (imagePa < 0n || imagePa % BigInt(SIZE_2M) !== 0n || imagePa + BigInt(imageBytes) > BigInt(ram)) {
      throw new VcvError('VCV_ERR_INTERNAL', `synthetic kernel image at physical ${imagePa} does not fit RAM`, {});
    }
    this.imagePa = Number(imagePa);
    this.alloc = new PhysAllocator(this.imagePa + imageBytes, ram);

    // Symbols inside the image (offsets arbitrary but fixed). init_top_pgt *is* the root table.
    const sym = (off: number): bigint => this.imageVa + BigInt(off);
    const symbols: Record<string, bigint> = {
      _stext: this.imageVa,
      init_uts_ns: sym(0x10000),
      prb: sym(0x20000),
      printk_rb_static: sym(0x20040),
      init_top_pgt: sym(0x200000),
    };
    this.symbols = symbols;

    // VMCOREINFO text first; every structure below is written with the offsets parsed back from it.
    const layoutLines = new Map<string, string>(LINUX_6_1_LAYOUT.map(([k, v]) => [k, v]));
    if (l5) {
      layoutLines.set('LENGTH(mem_section)', '262144');
      layoutLines.set('NUMBER(MAX_PHYSMEM_BITS)', '52');
    }
    const over = opts.vmcoreinfo ?? {};
    const roots = Number(over['LENGTH(mem_section)'] ?? layoutLines.get('LENGTH(mem_section)'));
    this.memSectionRootPa = this.alloc.alloc(roots * 8, PAGE_SIZE);
    const release = opts.osrelease ?? '6.1.0-synthetic-amd64';
    const printkKeys = (k: string): boolean => k.includes('printk') || k.includes('prb') || k.includes('atomic_long_t');
    const lines: [string, string][] = [
      ['OSRELEASE', release],
      ['BUILD-ID', '0123456789abcdef0123456789abcdef01234567'],
      ['PAGESIZE', '4096'],
      ['SYMBOL(init_uts_ns)', symbols.init_uts_ns!.toString(16)],
      ['SYMBOL(_stext)', symbols._stext!.toString(16)],
      ['SYMBOL(mem_section)', (this.directMap + BigInt(this.memSectionRootPa)).toString(16)],
      ...[...layoutLines.entries()].filter(([k]) => !printkKeys(k)),
      ['SYMBOL(prb)', symbols.prb!.toString(16)],
      ['SYMBOL(printk_rb_static)', symbols.printk_rb_static!.toString(16)],
      ...[...layoutLines.entries()].filter(([k]) => printkKeys(k)),
      ['NUMBER(phys_base)', physBase.toString()],
      ['SYMBOL(init_top_pgt)', symbols.init_top_pgt!.toString(16)],
      ['NUMBER(pgtable_l5_enabled)', l5 ? '1' : '0'],
      ['KERNELOFFSET', kernelOffset.toString(16)],
      ['NUMBER(KERNEL_IMAGE_SIZE)', '1073741824'],
      ['NUMBER(sme_mask)', (opts.smeMask ?? 0n).toString()],
    ];
    const finalLines: [string, string][] = [];
    for (const [k, v] of lines) {
      if (k in over) {
        const o = over[k];
        if (o !== undefined) finalLines.push([k, o]);
      } else finalLines.push([k, v]);
    }
    for (const [k, v] of Object.entries(over)) if (!lines.some(([x]) => x === k) && v !== undefined) finalLines.push([k, v]);
    const text = finalLines.map(([k, v]) => `${k}=${v}\n`).join('');
    this.info = Vmcoreinfo.parse(text, { origin: 'synthetic' });
    this.layout = pageLayoutFromVmcoreinfo(this.info);
    const info = this.info;

    // Page tables: root at init_top_pgt's physical address, inside the image.
    this.pt = new PageTableBuilder(this.mem, this.alloc, this.levels, opts.smeMask ?? 0n, this.pa(symbols.init_top_pgt!));
    this.pt.mapRange(this.imageVa, this.imagePa, imageBytes, SIZE_2M);
    // Direct map: 1 GiB leaves for whole GiBs, 2 MiB for the rest.
    const gibs = Math.floor(ram / SIZE_1G);
    this.pt.mapRange(this.directMap, 0, gibs * SIZE_1G, SIZE_1G);
    if (ram > gibs * SIZE_1G) this.pt.mapRange(this.directMap + BigInt(gibs * SIZE_1G), gibs * SIZE_1G, ram - gibs * SIZE_1G, SIZE_2M);

    // mem_section: root array (direct map), one section array per root in use, struct pages in vmemmap.
    const pagesPerSection = 2 ** (info.number('SECTION_SIZE_BITS') - 12);
    const sizeofMs = info.size('mem_section');
    const perRoot = PAGE_SIZE / sizeofMs;
    const offMap = info.offset('mem_section.section_mem_map');
    const nSections = Math.ceil(ram / PAGE_SIZE / pagesPerSection);
    this.sectionArrayPa = [];
    const memmapBytes = pagesPerSection * this.layout.size;
    for (let nr = 0; nr < nSections; nr++) {
      const r = Math.floor(nr / perRoot);
      if (this.sectionArrayPa[r] === undefined) {
        const pa = this.alloc.alloc(PAGE_SIZE, PAGE_SIZE);
        this.mem.write(pa, new Uint8Array(PAGE_SIZE));
        this.sectionArrayPa[r] = pa;
        this.mem.writeU64(this.memSectionRootPa + r * 8, this.directMap + BigInt(pa));
      }
      const mpa = this.alloc.alloc(Math.ceil(memmapBytes / SIZE_2M) * SIZE_2M, SIZE_2M);
      this.sectionMemmapPa[nr] = mpa;
      const va = this.vmemmap + BigInt(nr * pagesPerSection * this.layout.size);
      this.pt.mapRange(va, mpa, Math.ceil(memmapBytes / SIZE_2M) * SIZE_2M, SIZE_2M);
      const map = this.vmemmap | BigInt(SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP | 0x4 /* online */ | 0x8 /* early */);
      this.mem.writeU64(this.sectionArrayPa[r]! + (nr % perRoot) * sizeofMs + offMap, map);
    }

    // printk ring buffer, empty as the kernel sets it up (DESC0_ID, that descriptor reusable).
    const pl = printkLayout(info);
    const countBits = opts.printkCountBits ?? 6;
    const sizeBits = opts.printkSizeBits ?? 13;
    const count = 1n << BigInt(countBits);
    const descsPa = this.alloc.alloc(Number(count) * pl.sizeofDesc, 64);
    const infosPa = this.alloc.alloc(Number(count) * pl.sizeofInfo, 64);
    const dataPa = this.alloc.alloc(1 << sizeBits, 64);
    const rbPa = this.pa(symbols.printk_rb_static!);
    this.prb = { rbPa, descsPa, infosPa, dataPa, countBits, sizeBits, l: pl };
    this.mem.writeU64(this.pa(symbols.prb!), symbols.printk_rb_static!);
    const dr = rbPa + pl.offDescRing;
    const tr = rbPa + pl.offTextDataRing;
    this.mem.writeU32(dr + pl.offCountBits, countBits);
    this.mem.writeU64(dr + pl.offDescs, this.directMap + BigInt(descsPa));
    this.mem.writeU64(dr + pl.offInfos, this.directMap + BigInt(infosPa));
    this.mem.writeU32(tr + pl.offSizeBits, sizeBits);
    this.mem.writeU64(tr + pl.offData, this.directMap + BigInt(dataPa));
    this.logHeadId = -(count + 1n) & DESC_ID_MASK;
    this.logTailId = this.logHeadId;
    this.writeIds();
    const d0 = descsPa + Number(this.logHeadId % count) * pl.sizeofDesc;
    this.mem.writeU64(d0 + pl.offStateVar + pl.offCounter, (3n << 62n) | this.logHeadId);
    this.mem.writeU64(d0 + pl.offTextBlkLpos + pl.offLposBegin, 1n); // FAILED_LPOS
    this.mem.writeU64(d0 + pl.offTextBlkLpos + pl.offLposNext, 1n);

    // utsname.
    if (info.has('SYMBOL(init_uts_ns)')) {
      const uts = ['Linux', 'synthetic', release, '#1 SMP synthetic', 'x86_64', '(none)'];
      const utsBuf = new Uint8Array(65 * 6);
      uts.forEach((s, i) => utsBuf.set(Buffer.from(s.slice(0, 64), 'latin1'), i * 65));
      this.mem.write(this.pa(info.symbol('init_uts_ns')) + info.offset('uts_namespace.name'), utsBuf);
    }

    // VMCOREINFO in RAM, twice (text page, note page), like vmcoreinfo_data / vmcoreinfo_note.
    if (opts.vmcoreinfoInRam !== false) {
      const textPa = this.alloc.alloc(PAGE_SIZE, PAGE_SIZE);
      const notePa = this.alloc.alloc(PAGE_SIZE, PAGE_SIZE);
      const bytes = Buffer.from(text, 'latin1');
      this.mem.write(textPa, bytes);
      const hdr = Buffer.alloc(24);
      hdr.writeUInt32LE(VMCOREINFO_NOTE_NAME.length + 1, 0);
      hdr.writeUInt32LE(bytes.length, 4);
      hdr.writeUInt32LE(0, 8);
      hdr.write(VMCOREINFO_NOTE_NAME, 12, 'latin1');
      this.mem.write(notePa, Buffer.concat([hdr, bytes]));
      this.vmcoreinfoPa = { text: textPa, note: notePa };
    } else {
      this.vmcoreinfoPa = undefined;
    }
    if (opts.vmcoreinfoNote) this.mem.notes.push(this.info.toNote());

    // Every RAM pfn gets the default struct page.
    if (opts.defaultPage !== null) {
      const def = opts.defaultPage ?? { mapcount: -1, refcount: 1, flags: 1n << 10n /* PG_reserved */ };
      this.fillPages(0, ram / PAGE_SIZE, def);
    }
  }

  private writeIds(): void {
    const { rbPa, l } = this.prb;
    const dr = rbPa + l.offDescRing;
    this.mem.writeU64(dr + l.offHeadId + l.offCounter, this.logHeadId);
    this.mem.writeU64(dr + l.offTailId + l.offCounter, this.logTailId);
  }

  /** Physical address of a kernel-image or direct-map virtual address. */
  pa(va: bigint): number {
    if (va >= START_KERNEL_MAP) return Number(va - START_KERNEL_MAP + (this.opts.physBase ?? 0n));
    if (va >= this.directMap && va < this.directMap + BigInt(this.opts.ramBytes)) return Number(va - this.directMap);
    throw new VcvError('VCV_ERR_INTERNAL', `0x${va.toString(16)} is not an image or direct-map address`, {});
  }

  /** Physical address of pfn's struct page. */
  structPagePa(pfn: number): number {
    const pps = 2 ** (this.info.number('SECTION_SIZE_BITS') - 12);
    const nr = Math.floor(pfn / pps);
    const base = this.sectionMemmapPa[nr];
    if (base === undefined) throw new VcvError('VCV_ERR_INTERNAL', `pfn ${pfn} has no section`, {});
    return base + (pfn - nr * pps) * this.layout.size;
  }

  /** Physical address of the mem_section entry of section `nr`. */
  memSectionEntryPa(nr: number): number {
    const perRoot = PAGE_SIZE / this.info.size('mem_section');
    return this.sectionArrayPa[Math.floor(nr / perRoot)]! + (nr % perRoot) * this.info.size('mem_section');
  }

  setPage(pfn: number, f: StructPageFields): void {
    const pa = this.structPagePa(pfn);
    encodeStructPage(this.layout, this.mem.viewOf(pa, this.layout.size), 0, f);
  }

  /** Write the same struct page for pfns [start, end) (fast bulk path). */
  fillPages(start: number, end: number, f: StructPageFields): void {
    const size = this.layout.size;
    const tmp = new DataView(new ArrayBuffer(size));
    encodeStructPage(this.layout, tmp, 0, f);
    const one = new Uint8Array(tmp.buffer);
    for (let pfn = start; pfn < end; ) {
      const pa = this.structPagePa(pfn);
      // Pages of one section are contiguous: fill up to the section end / 2 MiB chunk end.
      const pps = 2 ** (this.info.number('SECTION_SIZE_BITS') - 12);
      const secEnd = (Math.floor(pfn / pps) + 1) * pps;
      const chunkEnd = pfn + Math.floor((SIZE_2M - (pa % SIZE_2M)) / size);
      const stop = Math.min(end, secEnd, chunkEnd);
      const view = this.mem.viewOf(pa, (stop - pfn) * size);
      const arr = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      for (let k = 0; k < stop - pfn; k++) arr.set(one, k * size);
      pfn = stop;
    }
  }

  /** A free buddy block of 2^order pages at pfn (head typed buddy, private = order, rest unmapped). */
  addFreeBlock(pfn: number, order: number): void {
    this.setPage(pfn, { mapcount: this.layout.buddyType ?? -129, private: BigInt(order), refcount: 0 });
    if (order > 0) this.fillPages(pfn + 1, pfn + 2 ** order, { mapcount: -1, refcount: 0 });
  }

  /** A compound page of 2^order pages: head with `head` fields + PG_head, tails pointing at the head. */
  addCompound(pfn: number, order: number, head: StructPageFields, dtor = 0): void {
    const L = this.layout;
    const headFlags = (head.flags ?? 0n) | BigInt(L.headMaskLo) | (BigInt(L.headMaskHi) << 32n);
    this.setPage(pfn, { ...head, flags: headFlags });
    const headVa = this.vmemmap + BigInt(pfn * L.size);
    for (let t = 1; t < 2 ** order; t++) this.setPage(pfn + t, { compoundHead: headVa | 1n, mapcount: -1, refcount: 0 });
    if (order > 0 && L.compoundOrder.kind === 'tail-byte') {
      this.mem.writeU8(this.structPagePa(pfn + 1) + L.compoundOrder.offset, order);
      if (L.offCompoundDtor !== undefined) this.mem.writeU8(this.structPagePa(pfn) + L.offCompoundDtor, dtor);
    }
  }

  /** Flags word with the named PG_ bits (lru, private, swapcache, swapbacked, slab, hwpoison). */
  flags(...names: ('lru' | 'private' | 'swapcache' | 'swapbacked' | 'slab' | 'hwpoison')[]): bigint {
    const L = this.layout;
    const m = { lru: L.pgLru, private: L.pgPrivate, swapcache: L.pgSwapcache, swapbacked: L.pgSwapbacked, slab: L.pgSlab, hwpoison: L.pgHwpoison };
    return flagsOf(...names.map((n) => m[n]));
  }

  /** Append one record to the printk ring buffer (the kernel's layout; wraps like the kernel). */
  log(rec: SyntheticLogRecord): void {
    const { descsPa, infosPa, dataPa, countBits, sizeBits, l } = this.prb;
    const count = 1n << BigInt(countBits);
    const size = 1n << BigInt(sizeBits);
    const text = Buffer.from(rec.text, 'utf8');
    const blk = BigInt(Math.ceil((8 + text.length) / 8) * 8);
    if (blk > size / 2n) throw new VcvError('VCV_ERR_INTERNAL', 'synthetic log record too long', {});
    const id = (this.logHeadId + 1n) & DESC_ID_MASK;
    const begin = this.logHeadLpos;
    let next = begin + blk;
    let at = begin % size;
    if (begin / size !== next / size) {
      // Wraps (or ends exactly on the lap boundary): the block goes to the start of the next lap and
      // `begin` keeps the old lpos, as data_alloc() does; readers then start at offset 0.
      next = (begin / size + 1n) * size + blk;
      at = 0n;
    }
    this.logHeadLpos = next;
    const idBuf = Buffer.alloc(8);
    idBuf.writeBigUInt64LE(id);
    this.mem.write(dataPa + Number(at), Buffer.concat([idBuf, text]));
    const d = descsPa + Number(id % count) * l.sizeofDesc;
    this.mem.writeU64(d + l.offStateVar + l.offCounter, (PRB_DESC_FINALIZED << 62n) | id);
    this.mem.writeU64(d + l.offTextBlkLpos + l.offLposBegin, begin);
    this.mem.writeU64(d + l.offTextBlkLpos + l.offLposNext, next);
    const inf = infosPa + Number(id % count) * l.sizeofInfo;
    this.mem.write(inf, new Uint8Array(l.sizeofInfo));
    this.mem.writeU64(inf + l.offSeq, this.logSeq);
    this.mem.writeU64(inf + l.offTsNsec, rec.tsNsec ?? this.logSeq * 1_000_000n);
    this.mem.writeU16(inf + l.offTextLen, text.length);
    this.mem.writeU8(inf + l.offTextLen + 3, ((rec.level ?? 6) & 7) << 5);
    this.logSeq++;
    this.logCount++;
    this.logHeadId = id;
    // Oldest records drop out when descriptors run out or their text was overwritten.
    if (this.logCount === 1) this.logTailId = id;
    if (((id - this.logTailId) & DESC_ID_MASK) >= count - 1n) this.logTailId = (id - count + 2n) & DESC_ID_MASK;
    while (this.logTailId !== id) {
      const td = descsPa + Number(this.logTailId % count) * l.sizeofDesc;
      const tb = this.mem.readU64(td + l.offTextBlkLpos + l.offLposBegin);
      if (next - tb > size) this.logTailId = (this.logTailId + 1n) & DESC_ID_MASK;
      else break;
    }
    this.writeIds();
  }
}

/** Convenience: build a synthetic kernel. */
export function buildSyntheticKernel(opts: SyntheticKernelOptions): SyntheticKernel {
  return new SyntheticKernel(opts);
}
