/**
 * LinuxKernel: one guest kernel seen through a MemorySource — VMCOREINFO, page tables, mem_section,
 * struct pages, printk. A thin façade over the library modules, which stay usable on their own.
 */
import type { MemorySource } from '@vicover/core';
import { VcvError, isVcvError } from '@vicover/errors';
import { classifyPages, countZeroPages, type ClassifyOptions, type ClassifyResult } from './classify.js';
import { findVmcoreinfo, type FindVmcoreinfoOptions, type FoundVmcoreinfo } from './find-vmcoreinfo.js';
import { KernelMemory } from './kmem.js';
import { memSectionLayout, walkMemSections, type MemSectionLayout, type SectionWalk } from './mem-section.js';
import { pageLayoutFromVmcoreinfo, type PageLayout } from './page-layout.js';
import { X86_64Paging, pagingFromVmcoreinfo } from './paging.js';
import { findPanicLine, lastLines, printkLayout, readPrintk, type PrintkLimits, type PrintkLog } from './printk.js';
import { hex } from './reader.js';
import { readUtsname, type Utsname } from './utsname.js';
import { Vmcoreinfo } from './vmcoreinfo.js';

/**
 * Check that VMCOREINFO fits this memory: the top-level page table maps its own symbol back to itself,
 * and `init_uts_ns` holds the same release as OSRELEASE. Throws a VcvError saying which check failed.
 */
export function checkVmcoreinfoAgainstMemory(source: MemorySource, info: Vmcoreinfo): void {
  const cfg = pagingFromVmcoreinfo(info);
  const paging = new X86_64Paging(source, cfg);
  const top = info.symbol('init_top_pgt');
  const pa = paging.translate(top);
  if (pa !== cfg.rootPa) {
    throw new VcvError(
      'VCV_ERR_TRANSLATION',
      `page tables disagree with VMCOREINFO: init_top_pgt ${hex(top)} maps to ${hex(pa)}, not to the table itself at ${hex(cfg.rootPa)}`,
      { va: hex(top) },
    );
  }
  if (info.has('SYMBOL(init_uts_ns)')) {
    const uts = readUtsname(new KernelMemory(source, paging), info);
    if (uts.release !== info.osrelease) {
      throw new VcvError(
        'VCV_ERR_VMCOREINFO_INVALID',
        `VMCOREINFO says OSRELEASE=${info.osrelease} but the kernel's init_uts_ns says ${JSON.stringify(uts.release.slice(0, 64))}`,
        { key: 'OSRELEASE' },
      );
    }
  }
}

export interface OpenKernelOptions extends Omit<FindVmcoreinfoOptions, 'validate'> {
  /** VMCOREINFO already known (skips the search). */
  readonly vmcoreinfo?: Vmcoreinfo;
  /** Check VMCOREINFO against memory (default true). */
  readonly check?: boolean;
  /** Page-table pages cached (default 64). */
  readonly pageTableCache?: number;
}

export class LinuxKernel {
  readonly kmem: KernelMemory;
  private walk: SectionWalk | undefined;
  private pageLayoutCache: PageLayout | undefined;
  private sectionLayoutCache: MemSectionLayout | undefined;

  private constructor(
    readonly source: MemorySource,
    readonly info: Vmcoreinfo,
    readonly found: FoundVmcoreinfo,
    readonly paging: X86_64Paging,
  ) {
    this.kmem = new KernelMemory(source, paging);
  }

  static async open(source: MemorySource, opts: OpenKernelOptions = {}): Promise<LinuxKernel> {
    const check = opts.check !== false;
    const validate = check ? (info: Vmcoreinfo) => checkVmcoreinfoAgainstMemory(source, info) : undefined;
    let found: FoundVmcoreinfo;
    if (opts.vmcoreinfo) {
      validate?.(opts.vmcoreinfo);
      found = { info: opts.vmcoreinfo, origin: 'text', scannedBytes: 0, rejected: [] };
    } else {
      found = await findVmcoreinfo(source, { ...opts, ...(validate ? { validate } : {}) });
    }
    const paging = X86_64Paging.fromVmcoreinfo(source, found.info, opts.pageTableCache);
    return new LinuxKernel(source, found.info, found, paging);
  }

  /** NUMBER(phys_base) (may be negative under KASLR). */
  get physBase(): bigint {
    return this.info.numberBig('phys_base');
  }
  get kernelOffset(): bigint | undefined {
    return this.info.kernelOffset;
  }

  utsname(): Utsname {
    return readUtsname(this.kmem, this.info);
  }

  /** utsname, or undefined when VMCOREINFO lacks it or it cannot be read. */
  tryUtsname(): Utsname | undefined {
    try {
      return this.utsname();
    } catch (e) {
      if (e instanceof VcvError) return undefined;
      throw e;
    }
  }

  get pageLayout(): PageLayout {
    return (this.pageLayoutCache ??= pageLayoutFromVmcoreinfo(this.info));
  }
  get sectionLayout(): MemSectionLayout {
    return (this.sectionLayoutCache ??= memSectionLayout(this.info));
  }

  /** Present sections below the source's maxPfn (cached). */
  sections(): SectionWalk {
    return (this.walk ??= walkMemSections(this.kmem, this.sectionLayout, this.source.maxPfn));
  }

  /** Classify every RAM page (see classify.ts). */
  async classify(opts: ClassifyOptions = {}): Promise<ClassifyResult> {
    const layout = this.pageLayout;
    const walk = this.sections();
    return classifyPages(this.kmem, layout, this.sectionLayout, walk.sections, this.source.ranges, this.source.maxPfn, opts);
  }

  /** Zero pages among the pages a classification keeps (all RAM when `excluded` is undefined). */
  countZeroPages(excluded?: Uint8Array, opts: { blockBytes?: number; signal?: AbortSignal } = {}) {
    return countZeroPages(this.source, this.source.ranges, excluded, opts);
  }

  async printk(limits?: PrintkLimits): Promise<PrintkLog> {
    return readPrintk(this.kmem, printkLayout(this.info), limits);
  }

  /** Panic line + last `lines` log lines. Throws VCV_ERR_PRINTK when the log cannot be read. */
  async triage(lines = 20, limits?: PrintkLimits): Promise<{ panic: string | undefined; lastLines: string[]; records: number }> {
    const log = await this.printk(limits);
    return { panic: findPanicLine(log.records), lastLines: lastLines(log.records, lines), records: log.records.length };
  }
}

/** True for the errors introspection raises on bad guest data (as opposed to bugs or I/O failures). */
export function isIntrospectionError(e: unknown): e is VcvError {
  return (
    isVcvError(e) &&
    (e.code === 'VCV_ERR_VMCOREINFO_NOT_FOUND' ||
      e.code === 'VCV_ERR_VMCOREINFO_INVALID' ||
      e.code === 'VCV_ERR_TRANSLATION' ||
      e.code === 'VCV_ERR_INTROSPECTION' ||
      e.code === 'VCV_ERR_MEMORY_RANGE' ||
      e.code === 'VCV_ERR_PRINTK')
  );
}
