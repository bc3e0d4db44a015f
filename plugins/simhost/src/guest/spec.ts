/**
 * What a simulated guest looks like: its size, how much of its memory is free, how the rest divides
 * into page cache, anonymous (user) memory and kernel memory, and how its page contents exist (written
 * into the RAM file, or generated on read). One spec → one cached image (see image.ts).
 *
 * Defaults follow the measured page mix of the real 4.5 GiB test guest `big4` (docs/guests.md:
 * cache 34 %, user 33 %, free 28 %, zero 2 %, remaining 3 % of RAM), expressed relative to the
 * memory in use so `freePercent` can vary.
 */
import { createHash } from 'node:crypto';
import { VcvError } from '@vicover/errors';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
/** SECTION_SIZE_BITS 27: guests are whole memory sections (so every struct page slot is a RAM page). */
export const SECTION_BYTES = 128 * MiB;
/** Bump when generated images change, so cached images are rebuilt. */
export const GENERATOR_VERSION = 3;

export type ContentMode = 'written' | 'generated';
export type FreeTails = 'written' | 'holes';

export interface GuestSpec {
  readonly ramBytes: number;
  /** Percent of RAM pages in free buddy blocks (approximate; the generator reports the exact count). */
  readonly freePercent: number;
  /** Percent of the pageblocks in use that hold kernel (unmovable) allocations: slab, page tables. */
  readonly kernelPercent: number;
  /** Percent of the remaining pageblocks in use that hold page cache (the rest: anonymous memory). */
  readonly cachePercent: number;
  /** Percent of anonymous pageblocks that are one transparent huge page (order 9) each. */
  readonly thpPercent: number;
  /** Every n-th page-cache page has PG_private (buffer heads): makedumpfile's "private cache". */
  readonly privateCacheEvery: number;
  /** Page tables: 4 or 5 levels. */
  readonly levels: 4 | 5;
  /** `written`: every data page is in the RAM file; `generated`: data pages are generated on read. */
  readonly content: ContentMode;
  /** Struct pages of free-block and huge-page tails: written like the kernel's, or left as holes. */
  readonly freeTails: FreeTails;
  /** How strongly free memory concentrates at low addresses (0 = sharp boundary, 1 = spread out). */
  readonly freeSpread: number;
  readonly seed: number;
  readonly osrelease: string;
  /** The panic message in the guest's kernel log. */
  readonly panic: string;
  /** NUMBER(phys_base) and KERNELOFFSET, as under KASLR. */
  readonly physBase: bigint;
  readonly kernelOffset: bigint;
  readonly cpus: number;
}

/** Guests up to this size get their data pages written into the RAM file by default. */
export const WRITTEN_CONTENT_MAX_BYTES = 2 * GiB;

export const DEFAULT_PANIC = 'sysrq triggered crash';

export interface GuestSpecInput {
  readonly memoryMiB: number;
  readonly freePercent?: number;
  readonly kernelPercent?: number;
  readonly cachePercent?: number;
  readonly thpPercent?: number;
  readonly privateCacheEvery?: number;
  readonly levels?: 4 | 5;
  readonly content?: ContentMode | 'auto';
  readonly freeTails?: FreeTails | 'auto';
  readonly freeSpread?: number;
  readonly seed?: number;
  readonly osrelease?: string;
  readonly panic?: string;
  readonly cpus?: number;
}

export function normalizeSpec(i: GuestSpecInput): GuestSpec {
  const ramBytes = i.memoryMiB * MiB;
  const bad = (m: string) => new VcvError('VCV_ERR_USAGE', `simulated guest: ${m}`, { plugin: 'simhost' });
  if (!Number.isSafeInteger(ramBytes) || ramBytes < 2 * SECTION_BYTES || ramBytes % SECTION_BYTES !== 0) {
    throw bad(`memory ${i.memoryMiB} MiB must be a multiple of 128 MiB and at least 256 MiB`);
  }
  if (ramBytes > 16 * 1024 * GiB) throw bad(`memory ${i.memoryMiB} MiB is above the 16 TiB the simulated host supports`);
  const pct = (v: number | undefined, d: number, name: string, max = 100) => {
    const x = v ?? d;
    if (!(x >= 0 && x <= max)) throw bad(`${name} ${x} must be within 0–${max}`);
    return x;
  };
  const content = i.content === undefined || i.content === 'auto' ? (ramBytes <= WRITTEN_CONTENT_MAX_BYTES ? 'written' : 'generated') : i.content;
  const freeTails = i.freeTails === undefined || i.freeTails === 'auto' ? (content === 'written' ? 'written' : 'holes') : i.freeTails;
  return {
    ramBytes,
    freePercent: pct(i.freePercent, 50, 'freePercent', 95),
    kernelPercent: pct(i.kernelPercent, 5, 'kernelPercent'),
    cachePercent: pct(i.cachePercent, 50, 'cachePercent'),
    thpPercent: pct(i.thpPercent, 50, 'thpPercent'),
    privateCacheEvery: Math.max(1, Math.round(i.privateCacheEvery ?? 25)),
    levels: i.levels ?? 4,
    content,
    freeTails,
    freeSpread: pct(i.freeSpread, 0.25, 'freeSpread', 1),
    seed: (i.seed ?? 1) >>> 0,
    osrelease: i.osrelease ?? '6.1.0-simhost-amd64',
    panic: i.panic ?? DEFAULT_PANIC,
    // A KASLR-like placement: image 64 MiB above its link address, phys_base negative as on the test guests.
    physBase: -0x1000000n,
    kernelOffset: 0x4000000n,
    cpus: Math.max(1, Math.min(64, i.cpus ?? 2)),
  };
}

/** A short stable hash of everything that shapes the image (for the cache directory name). */
export function specHash(s: GuestSpec): string {
  const canon = JSON.stringify({ ...s, physBase: s.physBase.toString(), kernelOffset: s.kernelOffset.toString(), v: GENERATOR_VERSION });
  return createHash('sha256').update(canon).digest('hex').slice(0, 12);
}

export function specToJson(s: GuestSpec): Record<string, unknown> {
  return { ...s, physBase: s.physBase.toString(), kernelOffset: s.kernelOffset.toString() };
}
