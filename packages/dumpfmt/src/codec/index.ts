/**
 * Per-page compression codecs of the kdump-compressed format. One codec per file; each page is stored
 * compressed (descriptor flag = the codec's flag) or, when the compressed form is not smaller than the
 * page, raw (flag 0).
 *
 * - zlib: a zlib stream (RFC 1950) as zlib's `uncompress()` reads it, level 1 (Z_BEST_SPEED), via
 *   Node's zlib. The window is 4 KiB (windowBits 12): a page is 4 KiB, so nothing is lost and the
 *   per-call setup is cheaper; `uncompress()` accepts any window up to 32 KiB.
 * - lzo: LZO1X-1 in TypeScript (./lzo.ts).
 * - snappy: snappy raw format in TypeScript (./snappy.ts).
 * - zstd: only where the running Node has zlib.zstdCompressSync (Node ≥ 22.15); not on Node 20.
 */
import * as zlib from 'node:zlib';
import { VcvError } from '@vicover/errors';
import { LzoCompressor, lzoDecompress } from './lzo.js';
import { SnappyCompressor, snappyDecompress } from './snappy.js';

export type Compression = 'none' | 'zlib' | 'lzo' | 'snappy' | 'zstd';

/** kdump `status` / `page_desc.flags` bits (makedumpfile diskdump_mod.h). */
export const DUMP_DH_COMPRESSED_ZLIB = 0x1;
export const DUMP_DH_COMPRESSED_LZO = 0x2;
export const DUMP_DH_COMPRESSED_SNAPPY = 0x4;
export const DUMP_DH_COMPRESSED_INCOMPLETE = 0x8;
export const DUMP_DH_EXCLUDED_VMEMMAP = 0x10;
export const DUMP_DH_COMPRESSED_ZSTD = 0x20;
export const DUMP_DH_COMPRESSED_MASK = DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD;

export const COMPRESSION_FLAG: Readonly<Record<Compression, number>> = {
  none: 0,
  zlib: DUMP_DH_COMPRESSED_ZLIB,
  lzo: DUMP_DH_COMPRESSED_LZO,
  snappy: DUMP_DH_COMPRESSED_SNAPPY,
  zstd: DUMP_DH_COMPRESSED_ZSTD,
};

type ZstdZlib = typeof zlib & {
  zstdCompressSync?: (b: Uint8Array, o?: object) => Buffer;
  zstdDecompressSync?: (b: Uint8Array, o?: object) => Buffer;
  constants: { ZSTD_c_compressionLevel?: number };
};
const zz = zlib as ZstdZlib;

/** Codecs this runtime can write. */
export function writableCompressions(): Compression[] {
  const list: Compression[] = ['none', 'zlib', 'lzo', 'snappy'];
  if (typeof zz.zstdCompressSync === 'function') list.push('zstd');
  return list;
}

/** The codec named by a header `status` (or descriptor `flags`) word; 'none' when no codec bit is set. */
export function compressionFromFlags(flags: number): Compression {
  if (flags & DUMP_DH_COMPRESSED_ZLIB) return 'zlib';
  if (flags & DUMP_DH_COMPRESSED_LZO) return 'lzo';
  if (flags & DUMP_DH_COMPRESSED_SNAPPY) return 'snappy';
  if (flags & DUMP_DH_COMPRESSED_ZSTD) return 'zstd';
  return 'none';
}

export interface PageCompressor {
  readonly compression: Compression;
  /** The page_desc flag for pages this codec compressed. */
  readonly flag: number;
  /**
   * Compress src[sOff, sOff+len) into dst[dOff…]. Returns the compressed size (< len) or -1 when the
   * compressed form is not smaller (store raw). Writes fewer than `len` bytes into dst.
   */
  compress(src: Buffer, sOff: number, len: number, dst: Buffer, dOff: number): number;
}

/** zlib's level for page compression (also the native packer's, native/pack.c). */
export const ZLIB_LEVEL = zlib.constants.Z_BEST_SPEED;

class ZlibCompressor implements PageCompressor {
  readonly compression = 'zlib' as const;
  readonly flag = DUMP_DH_COMPRESSED_ZLIB;
  private readonly opts: zlib.ZlibOptions = { level: ZLIB_LEVEL, windowBits: 12, memLevel: 8 };
  compress(src: Buffer, sOff: number, len: number, dst: Buffer, dOff: number): number {
    const out = zlib.deflateSync(src.subarray(sOff, sOff + len), this.opts);
    if (out.length >= len) return -1;
    out.copy(dst, dOff);
    return out.length;
  }
}

class ZstdCompressor implements PageCompressor {
  readonly compression = 'zstd' as const;
  readonly flag = DUMP_DH_COMPRESSED_ZSTD;
  private readonly opts = { params: { [zz.constants.ZSTD_c_compressionLevel ?? 100]: 1 } };
  compress(src: Buffer, sOff: number, len: number, dst: Buffer, dOff: number): number {
    const out = zz.zstdCompressSync!(src.subarray(sOff, sOff + len), this.opts);
    if (out.length >= len) return -1;
    out.copy(dst, dOff);
    return out.length;
  }
}

class TsCompressor implements PageCompressor {
  constructor(
    readonly compression: 'lzo' | 'snappy',
    readonly flag: number,
    private readonly impl: { compress(s: Uint8Array, so: number, l: number, d: Uint8Array, dof: number, lim: number): number },
  ) {}
  compress(src: Buffer, sOff: number, len: number, dst: Buffer, dOff: number): number {
    return this.impl.compress(src, sOff, len, dst, dOff, len);
  }
}

/** A compressor for one codec. Not thread-safe; cheap to create (one per writer or worker). */
export function createCompressor(c: Compression): PageCompressor | undefined {
  switch (c) {
    case 'none':
      return undefined;
    case 'zlib':
      return new ZlibCompressor();
    case 'lzo':
      return new TsCompressor('lzo', DUMP_DH_COMPRESSED_LZO, new LzoCompressor());
    case 'snappy':
      return new TsCompressor('snappy', DUMP_DH_COMPRESSED_SNAPPY, new SnappyCompressor());
    case 'zstd':
      if (typeof zz.zstdCompressSync !== 'function') {
        throw new VcvError('VCV_ERR_FORMAT_UNSUPPORTED', `zstd compression needs Node ≥ 22.15 (zlib.zstdCompressSync); this is Node ${process.versions.node}`);
      }
      return new ZstdCompressor();
    default:
      throw new VcvError('VCV_ERR_WRITER_OPTIONS', `unknown compression ${JSON.stringify(c)}; use one of ${writableCompressions().join(', ')}`);
  }
}

/**
 * Decompress one page stored with descriptor `flags` into a new Buffer of `pageSize` bytes.
 * Throws VCV_ERR_PAGE_CORRUPT when the data does not decompress to exactly one page, and
 * VCV_ERR_FORMAT_UNSUPPORTED for a codec this runtime cannot decode (zstd on Node < 22.15).
 */
export function decompressPage(flags: number, src: Buffer, pageSize: number, details: Record<string, unknown> = {}): Buffer {
  const codec = compressionFromFlags(flags);
  const corrupt = (why: string) => new VcvError('VCV_ERR_PAGE_CORRUPT', `page data does not decompress (${codec}): ${why}`, details);
  if (codec === 'none') {
    if (src.length !== pageSize) throw corrupt(`raw page of ${src.length} bytes, expected ${pageSize}`);
    return Buffer.from(src);
  }
  if ((flags & DUMP_DH_COMPRESSED_MASK & ~COMPRESSION_FLAG[codec]) !== 0) throw corrupt(`several codec bits set in flags 0x${flags.toString(16)}`);
  switch (codec) {
    case 'zlib': {
      let out: Buffer;
      try {
        out = zlib.inflateSync(src, { maxOutputLength: pageSize });
      } catch (e) {
        throw corrupt((e as Error).message);
      }
      if (out.length !== pageSize) throw corrupt(`${out.length} bytes instead of ${pageSize}`);
      return out;
    }
    case 'lzo': {
      const out = Buffer.alloc(pageSize);
      if (!lzoDecompress(src, out, pageSize)) throw corrupt('malformed LZO1X stream');
      return out;
    }
    case 'snappy': {
      const out = Buffer.alloc(pageSize);
      if (!snappyDecompress(src, out, pageSize)) throw corrupt('malformed snappy data');
      return out;
    }
    case 'zstd': {
      if (typeof zz.zstdDecompressSync !== 'function') {
        throw new VcvError(
          'VCV_ERR_FORMAT_UNSUPPORTED',
          `zstd-compressed pages need Node ≥ 22.15 (zlib.zstdDecompressSync); this is Node ${process.versions.node}. ` +
            'Convert the dump with `makedumpfile -c` (zlib) on a zstd-enabled build, or read it with crash/libkdumpfile.',
          details,
        );
      }
      let out: Buffer;
      try {
        out = zz.zstdDecompressSync(src, { maxOutputLength: pageSize });
      } catch (e) {
        throw corrupt((e as Error).message);
      }
      if (out.length !== pageSize) throw corrupt(`${out.length} bytes instead of ${pageSize}`);
      return out;
    }
  }
}
