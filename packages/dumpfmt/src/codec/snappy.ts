/**
 * Snappy raw format (what `snappy_compress`/`snappy_uncompress` and makedumpfile's `-p` use), for one
 * page at a time. Written from the format description (google/snappy format_description.txt):
 *
 *   varint32 uncompressed length, then elements; tag byte low 2 bits:
 *   00 literal   len-1 in the upper 6 bits (<60), or 60..63 = 1..4 little-endian length bytes follow
 *   01 copy      len 4..11 in bits 2-4, offset bits 8-10 in bits 5-7, + 1 byte offset low bits
 *   10 copy      len 1..64 in the upper 6 bits, + 2 byte little-endian offset
 *   11 copy      len 1..64 in the upper 6 bits, + 4 byte little-endian offset
 *
 * The compressor is a greedy hash-table matcher in the style of snappy's CompressFragment (4-byte
 * hashes, skip heuristic for incompressible data). Inputs here are at most 64 KiB (one fragment).
 */

const HASH_BITS = 12;
const HASH_SIZE = 1 << HASH_BITS;
const INPUT_MARGIN = 15;

function load32(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) | 0;
}

function hash(x: number): number {
  return Math.imul(x, 0x1e35a7bd) >>> (32 - HASH_BITS);
}

export class SnappyCompressor {
  private readonly table = new Uint16Array(HASH_SIZE);

  /**
   * Compress src[sOff, sOff+len) into dst starting at dOff. Returns the compressed size, or -1 as soon
   * as the output would reach `limit` bytes (the caller then stores the page raw). Never writes at or
   * past dOff + limit. len must be ≤ 65536.
   */
  compress(src: Uint8Array, sOff: number, len: number, dst: Uint8Array, dOff: number, limit: number): number {
    const end = dOff + limit;
    let op = dOff;
    // preamble: varint length
    let v = len;
    while (v >= 0x80) {
      if (op >= end) return -1;
      dst[op++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    if (op >= end) return -1;
    dst[op++] = v;

    const srcEnd = sOff + len;
    let nextEmit = sOff;
    if (len >= INPUT_MARGIN) {
      const table = this.table;
      table.fill(0);
      const ipLimit = srcEnd - INPUT_MARGIN;
      let ip = sOff + 1;
      let nextHash = hash(load32(src, ip));
      outer: for (;;) {
        // Find a 4-byte match.
        let skip = 32;
        let nextIp = ip;
        let candidate: number;
        do {
          ip = nextIp;
          const h = nextHash;
          const step = skip++ >>> 5;
          nextIp = ip + step;
          if (nextIp > ipLimit) break outer;
          nextHash = hash(load32(src, nextIp));
          candidate = sOff + table[h]!;
          table[h] = ip - sOff;
        } while (load32(src, ip) !== load32(src, candidate));

        // Literal [nextEmit, ip)
        op = emitLiteral(src, nextEmit, ip - nextEmit, dst, op, end);
        if (op < 0) return -1;

        // Copies, as long as the next position also matches.
        let cur: number;
        do {
          const base = ip;
          let matched = 4;
          while (base + matched < srcEnd && src[candidate + matched] === src[base + matched]) matched++;
          ip += matched;
          op = emitCopy(base - candidate, matched, dst, op, end);
          if (op < 0) return -1;
          nextEmit = ip;
          if (ip >= ipLimit) break outer;
          table[hash(load32(src, ip - 1))] = ip - 1 - sOff;
          const h = hash(load32(src, ip));
          candidate = sOff + table[h]!;
          table[h] = ip - sOff;
          cur = load32(src, ip);
        } while (cur === load32(src, candidate));
        ip++;
        nextHash = hash(load32(src, ip));
      }
    }
    if (nextEmit < srcEnd) {
      op = emitLiteral(src, nextEmit, srcEnd - nextEmit, dst, op, end);
      if (op < 0) return -1;
    }
    return op - dOff;
  }
}

function emitLiteral(src: Uint8Array, from: number, len: number, dst: Uint8Array, op: number, end: number): number {
  const n = len - 1;
  const hdr = n < 60 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1000000 ? 4 : 5;
  if (op + hdr + len >= end) return -1;
  if (n < 60) {
    dst[op++] = n << 2;
  } else {
    dst[op++] = (59 + (hdr - 1)) << 2;
    let x = n;
    for (let i = 1; i < hdr; i++) {
      dst[op++] = x & 0xff;
      x >>>= 8;
    }
  }
  if (len < 32) {
    for (let i = 0; i < len; i++) dst[op + i] = src[from + i]!;
  } else dst.set(src.subarray(from, from + len), op);
  return op + len;
}

function emitCopyUpTo64(offset: number, len: number, dst: Uint8Array, op: number, end: number): number {
  if (len < 12 && offset < 2048) {
    if (op + 2 >= end) return -1;
    dst[op++] = 1 | ((len - 4) << 2) | ((offset >>> 8) << 5);
    dst[op++] = offset & 0xff;
  } else {
    if (op + 3 >= end) return -1;
    dst[op++] = 2 | ((len - 1) << 2);
    dst[op++] = offset & 0xff;
    dst[op++] = (offset >>> 8) & 0xff;
  }
  return op;
}

function emitCopy(offset: number, len: number, dst: Uint8Array, op: number, end: number): number {
  while (len >= 68) {
    op = emitCopyUpTo64(offset, 64, dst, op, end);
    if (op < 0) return -1;
    len -= 64;
  }
  if (len > 64) {
    op = emitCopyUpTo64(offset, 60, dst, op, end);
    if (op < 0) return -1;
    len -= 60;
  }
  return emitCopyUpTo64(offset, len, dst, op, end);
}

/**
 * Decompress a snappy buffer into dst[0, expected). Returns true on success; false when the input is
 * malformed, would write out of bounds, or does not produce exactly `expected` bytes.
 */
export function snappyDecompress(src: Uint8Array, dst: Uint8Array, expected: number): boolean {
  let ip = 0;
  const n = src.length;
  // varint32
  let len = 0;
  let shift = 0;
  for (;;) {
    if (ip >= n || shift > 28) return false;
    const b = src[ip++]!;
    len += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
    shift += 7;
  }
  if (len !== expected || expected > dst.length) return false;
  let op = 0;
  while (ip < n) {
    const tag = src[ip++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let l = tag >>> 2;
      if (l >= 60) {
        const nb = l - 59;
        if (ip + nb > n) return false;
        l = 0;
        for (let i = 0; i < nb; i++) l += src[ip + i]! * 2 ** (8 * i);
        ip += nb;
      }
      l += 1;
      if (ip + l > n || op + l > expected) return false;
      dst.set(src.subarray(ip, ip + l), op);
      ip += l;
      op += l;
      continue;
    }
    let l: number;
    let off: number;
    if (kind === 1) {
      if (ip + 1 > n) return false;
      l = ((tag >>> 2) & 7) + 4;
      off = ((tag >>> 5) << 8) | src[ip++]!;
    } else if (kind === 2) {
      if (ip + 2 > n) return false;
      l = (tag >>> 2) + 1;
      off = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
    } else {
      if (ip + 4 > n) return false;
      l = (tag >>> 2) + 1;
      off = (src[ip]! | (src[ip + 1]! << 8) | (src[ip + 2]! << 16)) + src[ip + 3]! * 0x1000000;
      ip += 4;
    }
    if (off === 0 || off > op || op + l > expected) return false;
    let from = op - off;
    if (off >= l) {
      dst.copyWithin(op, from, from + l);
      op += l;
    } else {
      for (let i = 0; i < l; i++) dst[op++] = dst[from++]!;
    }
  }
  return op === expected;
}
