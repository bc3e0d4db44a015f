/**
 * The native page packer (native/pack.c → native/build/vicover-pack.node): zero-page checks and zlib
 * compression of a batch of pages in C, with one deflate stream per thread reset between pages, where
 * node:zlib's deflateSync() builds and frees a stream per page. Same stream parameters as the
 * JavaScript codec (level 1, windowBits 12, memLevel 8), same contract as the compression worker's
 * loop. Optional: without it (not built, or VICOVER_NATIVE_PACK=0) the JavaScript path runs.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface NativePacker {
  /**
   * Pack `pages` pages of `src` from `srcOffset` into `dst` from 0; per page `sizes[i]` = 0 (zero page,
   * only with excludeZero), n > 0 (zlib stream of n bytes), or -pageSize (stored raw). Returns the
   * bytes used in dst. Throws a RangeError on buffers too short for the counts given.
   */
  packPages(src: Uint8Array, srcOffset: number, pages: number, pageSize: number, dst: Uint8Array, sizes: Int32Array, excludeZero: boolean, level: number): number;
  readonly zlibVersion: string;
}

let loaded: NativePacker | null | undefined;

/** The packer, or null when it was not built (or is turned off). Loaded once per thread. */
export function nativePacker(): NativePacker | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.env.VICOVER_NATIVE_PACK === '0') return loaded;
  const file = process.env.VICOVER_NATIVE_PACK_BIN || fileURLToPath(new URL('../native/build/vicover-pack.node', import.meta.url));
  try {
    const m = createRequire(import.meta.url)(file) as NativePacker;
    if (typeof m.packPages === 'function') loaded = m;
  } catch {
    // not built: the JavaScript path
  }
  return loaded;
}
