/**
 * Simulated guest images: a sparse RAM file laid out like a crashed x86-64 Linux 6.1 guest, built with
 * plugin-linux's synthetic-kernel builders (page tables, mem_section, vmemmap, printk ring, VMCOREINFO,
 * utsname) on a file instead of process memory, plus the pageblock plan (plan.bin) and what the
 * generator intended (meta.json: page counts per makedumpfile class at dump level 31).
 *
 *   <cache>/<GiB>g-<free>f-<hash>/ram.img    sparse, exactly the guest's RAM size (flat: offset = GPA)
 *                                 plan.bin   one kind byte per 2 MiB pageblock
 *                                 meta.json  written last: its presence means the image is complete
 *
 * Memory stays bounded while generating (a few 2 MiB chunks, 32 KiB templates, the plan), so a 1 TiB
 * guest is generated on this machine: only its struct pages and kernel structures hit the disk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inRanges } from '@vicover/core';
import { VcvError, wrapError } from '@vicover/errors';
import { buildSyntheticKernel, type SyntheticKernel } from '@vicover/plugin-linux';
import { SparseFileRam } from './ram-file.js';
import { PageContent } from './content.js';
import { buildTemplates } from './structpages.js';
import { assignKinds, Kind, KIND_NAMES, kindCounts, kindHistogram, PAGE, PB_BYTES, PB_PAGES, zeroCounts, zeroVmemmapPages, type ClassCounts } from './plan.js';
import { GENERATOR_VERSION, GiB, specHash, specToJson, type GuestSpec } from './spec.js';

export interface GuestImageMeta {
  readonly generatorVersion: number;
  readonly spec: Record<string, unknown>;
  readonly hash: string;
  readonly ramBytes: number;
  readonly ramPages: number;
  /** Level-31 page classes the generator intended (what makedumpfile -d 31 and our classifier must find). */
  readonly intended: ClassCounts & { offline: number; hwpoison: number };
  /** Pageblocks per kind. */
  readonly pageblocks: Record<string, number>;
  readonly vmcoreinfo: string;
  readonly osrelease: string;
  readonly panicLine: string;
  /** Guest-physical address of each memory section's struct pages (SIZE(page) × 32768 bytes each). */
  readonly memmap: number[];
  readonly structPageSize: number;
  /** Kernel virtual address of the vmemmap (hex): where compound heads point. */
  readonly vmemmap: string;
  /** Guest-physical address of the top-level page table (CR3 of every vCPU). */
  readonly cr3: number;
  /** Kernel text address for the vCPUs' RIP. */
  readonly rip: string;
  readonly cpus: number;
  /** Bytes the RAM file holds on disk (allocated blocks) and seconds it took to generate. */
  readonly fileBytes: number;
  readonly generateSeconds: number;
  readonly createdAt: string;
}

export interface GuestImage {
  readonly dir: string;
  readonly ramFile: string;
  readonly planFile: string;
  readonly meta: GuestImageMeta;
  readonly spec: GuestSpec;
}

export function imageDirName(spec: GuestSpec): string {
  const gib = spec.ramBytes / GiB;
  return `${Number.isInteger(gib) ? gib : (spec.ramBytes / 2 ** 20).toString() + 'm'}g-${spec.freePercent}f-${specHash(spec)}`.replace('mg', 'm');
}

/** The image for `spec` under `cacheDir`: reused when complete, generated otherwise. */
export async function ensureImage(spec: GuestSpec, cacheDir: string, log?: (msg: string) => void): Promise<GuestImage> {
  const dir = path.join(cacheDir, imageDirName(spec));
  const existing = readImage(dir, spec);
  if (existing) return existing;
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  // Build in a temporary directory and rename: a half-built image is never taken for a complete one.
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { mode: 0o700 });
  try {
    await generateImage(spec, tmp, log);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const img = readImage(dir, spec);
  if (!img) throw new VcvError('VCV_ERR_INTERNAL', `simulated guest image ${dir} vanished after generation`);
  return img;
}

export function readImage(dir: string, spec: GuestSpec): GuestImage | null {
  try {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as GuestImageMeta;
    if (meta.generatorVersion !== GENERATOR_VERSION || meta.hash !== specHash(spec)) return null;
    const ramFile = path.join(dir, 'ram.img');
    if (fs.statSync(ramFile).size !== spec.ramBytes) return null;
    return { dir, ramFile, planFile: path.join(dir, 'plan.bin'), meta, spec };
  } catch {
    return null;
  }
}

/** The boot log a 6.1 guest leaves in its printk ring, then the crash. */
function bootLog(spec: GuestSpec): { text: string; level: number }[] {
  const mib = spec.ramBytes / 2 ** 20;
  const lines: [number, string][] = [
    [5, `Linux version ${spec.osrelease} (simulated@vicover) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1 (SIMULATED)`],
    [6, 'Command line: console=ttyS0 panic=0 vicover.simulated=1'],
    [6, 'BIOS-provided physical RAM map:'],
    [6, `BIOS-e820: [mem 0x0000000000000000-0x${(spec.ramBytes - 1).toString(16).padStart(16, '0')}] usable`],
    [6, 'NX (Execute Disable) protection: active'],
    [6, 'Hypervisor detected: KVM (simulated host)'],
    [6, `Memory: ${Math.round(mib * 1024 * 0.97)}K/${mib * 1024}K available`],
    [6, `x86/mm: ${spec.levels}-level paging`],
    [6, `smp: Brought up 1 node, ${spec.cpus} CPUs`],
    [6, 'devtmpfs: initialized'],
    [6, 'clocksource: Switched to clocksource kvm-clock'],
    [6, 'Freeing unused kernel image (initmem) memory: 2876K'],
    [6, 'virtio_blk virtio1: [vda] 4194304 512-byte logical blocks (2.15 GB/2.00 GiB)'],
    [6, 'EXT4-fs (vda): mounted filesystem with ordered data mode. Quota mode: none.'],
    [6, 'simhost: service started'],
    [6, 'sysrq: Trigger a crash'],
    [0, `Kernel panic - not syncing: ${spec.panic}`],
    [4, `CPU: 1 PID: 312 Comm: sh Not tainted ${spec.osrelease} #1 SMP PREEMPT_DYNAMIC Debian 6.1 (SIMULATED)`],
    [4, 'Hardware name: Simulated host (Vicover simhost), BIOS 1.16.2'],
    [4, 'Call Trace:'],
    [4, ' <TASK>'],
    [4, ' dump_stack_lvl+0x44/0x5c'],
    [4, ' panic+0x118/0x2ed'],
    [4, ' sysrq_handle_crash+0x16/0x20'],
    [4, ' __handle_sysrq.cold+0x43/0x11b'],
    [4, ' write_sysrq_trigger+0x24/0x40'],
    [4, ' proc_reg_write+0x51/0x90'],
    [4, ' vfs_write+0xc7/0x3c0'],
    [4, ' ksys_write+0x5f/0xe0'],
    [4, ' do_syscall_64+0x58/0xc0'],
    [4, ' entry_SYSCALL_64_after_hwframe+0x64/0xce'],
    [4, ' </TASK>'],
    [0, 'Kernel Offset: 0x4000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)'],
  ];
  return lines.map(([level, text]) => ({ level, text }));
}

/** Generate the image into `dir` (ram.img, plan.bin, meta.json last). */
export async function generateImage(spec: GuestSpec, dir: string, log?: (msg: string) => void): Promise<GuestImageMeta> {
  const t0 = performance.now();
  const ramFile = path.join(dir, 'ram.img');
  const ram = new SparseFileRam(ramFile, spec.ramBytes);
  let k: SyntheticKernel;
  try {
    k = buildSyntheticKernel({
      ramBytes: spec.ramBytes,
      levels: spec.levels,
      physBase: spec.physBase,
      kernelOffset: spec.kernelOffset,
      osrelease: spec.osrelease,
      memory: ram,
      defaultPage: null,
      printkCountBits: 9,
      printkSizeBits: 15,
    });
  } catch (e) {
    await ram.close().catch(() => undefined);
    throw wrapError(e, 'VCV_ERR_BACKEND', `simhost: building the simulated kernel for ${spec.ramBytes / GiB} GiB failed`);
  }
  try {
    const nPb = spec.ramBytes / PB_BYTES;
    const kinds = new Uint8Array(nPb).fill(255);
    // Fixed kernel structures: the image and everything the allocator handed out (vmemmap included).
    const kStartPb = Math.floor(k.imagePa / PB_BYTES);
    const kEndPb = Math.ceil(k.alloc.position / PB_BYTES);
    kinds.fill(Kind.KREGION, kStartPb, kEndPb);
    assignKinds(spec, kinds);
    const templates = buildTemplates(k.layout, k.vmemmap, spec.freeTails, spec.privateCacheEvery);
    const content = new PageContent(spec.seed);

    // Kernel log, text of the image (non-zero "code" between the structures the builder placed).
    let ts = 0n;
    for (const r of bootLog(spec)) {
      ts += 37_000_000n + BigInt(r.text.length) * 1_000_000n;
      k.log({ text: r.text, level: r.level, tsNsec: ts });
    }
    const textStart = k.imagePa + 0x30000;
    for (let pa = textStart; pa < k.imagePa + 0x200000; pa += PAGE) ram.pwrite(content.page(pa / PAGE, Kind.KREGION), pa);

    // Struct pages, pageblock by pageblock (each pageblock's 32 KiB lies in one section's memmap).
    const size = k.layout.size;
    const pbStructBytes = PB_PAGES * size;
    for (let pb = 0; pb < nPb; pb++) {
      const kind = kinds[pb]!;
      const pfn = pb * PB_PAGES;
      if (spec.freeTails === 'holes' && kind === Kind.FREE_TAIL10) continue;
      const { buf, off } = ram.bufferAt(k.structPagePa(pfn));
      const tpl = templates.byKind[kind]!;
      if (spec.freeTails === 'holes' && (kind === Kind.FREE_HEAD10 || kind === Kind.FREE9)) tpl.copy(buf, off, 0, size);
      else if (spec.freeTails === 'holes' && kind === Kind.USER_THP) tpl.copy(buf, off, 0, 2 * size);
      else tpl.copy(buf, off, 0, pbStructBytes);
      if (kind === Kind.USER_THP) templates.patchThp(buf, off, pfn);
    }
    ram.flush();

    // Data pages: written into the file for `written` guests (generated on read otherwise).
    if (spec.content === 'written') {
      const blk = Buffer.alloc(PB_BYTES);
      for (let pb = 0; pb < nPb; pb++) {
        const kind = kinds[pb]!;
        if (kind === Kind.KREGION || kind === Kind.FREE9 || kind === Kind.FREE_HEAD10 || kind === Kind.FREE_TAIL10) continue;
        content.fillPageblockPages(blk, 0, kind, pb * PB_PAGES, PB_PAGES);
        ram.pwrite(blk, pb * PB_BYTES);
      }
    }

    // What the generator intended: per-kind counts for the plan, zero pages of the kernel region
    // counted from the file (its vmemmap from the plan: struct pages left as holes).
    const hist = kindHistogram(kinds);
    const c = zeroCounts();
    for (let kind = 1; kind < hist.length; kind++) {
      const kc = kindCounts(kind, spec.privateCacheEvery);
      for (const key of Object.keys(c) as (keyof ClassCounts)[]) c[key] += kc[key] * hist[kind]!;
    }
    const kregionPages = hist[Kind.KREGION]! * PB_PAGES;
    let vmemmapZero = 0;
    if (spec.freeTails === 'holes') for (let kind = 1; kind < hist.length; kind++) vmemmapZero += zeroVmemmapPages(kind) * hist[kind]!;
    const memmapRanges = k.sectionMemmapPa.map((pa) => ({ start: pa, end: pa + (2 ** 27 / PAGE) * size }));
    let kregionZero = vmemmapZero;
    const page = Buffer.alloc(PAGE);
    const zeroPage = Buffer.alloc(PAGE);
    for (let pb = kStartPb; pb < kEndPb; pb++) {
      for (let i = 0; i < PB_PAGES; i++) {
        const pa = (pb * PB_PAGES + i) * PAGE;
        if (inRanges(memmapRanges, pa, PAGE)) continue;
        ram.readSync(pa, page, 0, PAGE);
        if (page.equals(zeroPage)) kregionZero++;
      }
    }
    // Low memory below the kernel image, when not given to the plan, would be reserved and zero.
    c.zero += kregionZero;
    c.remaining += kregionPages - kregionZero;
    const ramPages = spec.ramBytes / PAGE;
    const sum = c.free + c.cache + c.privateCache + c.user + c.zero + c.remaining;
    if (sum !== ramPages) throw new VcvError('VCV_ERR_INTERNAL', `simhost: generated page classes add up to ${sum}, not ${ramPages}`);

    await ram.close();
    fs.writeFileSync(path.join(dir, 'plan.bin'), kinds, { mode: 0o600 });
    const pageblocks: Record<string, number> = {};
    KIND_NAMES.forEach((n, i) => (pageblocks[n] = hist[i]!));
    const meta: GuestImageMeta = {
      generatorVersion: GENERATOR_VERSION,
      spec: specToJson(spec),
      hash: specHash(spec),
      ramBytes: spec.ramBytes,
      ramPages,
      intended: { ...c, offline: 0, hwpoison: 0 },
      pageblocks,
      vmcoreinfo: k.info.text,
      osrelease: spec.osrelease,
      panicLine: `Kernel panic - not syncing: ${spec.panic}`,
      memmap: [...k.sectionMemmapPa],
      structPageSize: k.layout.size,
      vmemmap: k.vmemmap.toString(16),
      cr3: k.pt.rootPa,
      rip: (k.imageVa + 0x12345n).toString(16),
      cpus: spec.cpus,
      fileBytes: fs.statSync(ramFile).blocks * 512,
      generateSeconds: (performance.now() - t0) / 1000,
      createdAt: new Date().toISOString(),
    };
    fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
    log?.(`generated ${spec.ramBytes / GiB} GiB simulated guest in ${meta.generateSeconds.toFixed(1)} s (${(meta.fileBytes / 2 ** 20).toFixed(0)} MiB on disk)`);
    return meta;
  } catch (e) {
    await ram.close().catch(() => undefined);
    throw e;
  }
}
