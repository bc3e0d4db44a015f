/**
 * LZO1X, the format of liblzo2's `lzo1x_1_compress` / `lzo1x_decompress_safe` (makedumpfile `-l`,
 * QEMU `kdump-lzo`), for one page at a time. Written from the bitstream description in the Linux
 * kernel's Documentation/staging/lzo.rst; the compressor follows the LZO1X-1 scheme (14-bit hash
 * dictionary of 4-byte sequences, greedy matches, M2/M3/M4 match encodings, literal-run encodings).
 *
 * Instruction summary (state = number of literals copied by the previous instruction):
 *   0..15   state 0: long literal run, len = 3 + (L ?: 15 + 255·zeros + byte)
 *           state 1..3: 2-byte match, dist = (H<<2) + D + 1;  state 4: 3-byte match, dist = (H<<2) + D + 2049
 *   16..31  M4: len = 2 + (L ?: 7 + …), dist = 16384 + (H<<14) + (LE16>>2); dist 16384 = end of stream
 *   32..63  M3: len = 2 + (L ?: 31 + …), dist = (LE16>>2) + 1
 *   64..255 M2: len = 3 + L (64..127) or 5 + L (128..255), dist = (next byte << 3) + D + 1
 *   after a match, S = low 2 bits of the last distance byte literals follow (state = S).
 *   First byte > 17: a literal run of (byte − 17) bytes.
 */

/** 4096 hash slots: plenty for one 4 KiB page (liblzo's 16384 are for 48 KiB blocks) and a quarter of the per-page reset. */
const D_BITS = 12;
const D_SIZE = 1 << D_BITS;
const M2_MAX_LEN = 8;
const M2_MAX_OFFSET = 0x0800;
const M3_MAX_OFFSET = 0x4000;
const M3_MAX_LEN = 33;
const M4_MAX_LEN = 9;
const M3_MARKER = 32;
const M4_MARKER = 16;

function load32(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) | 0;
}

export class LzoCompressor {
  private readonly dict = new Uint16Array(D_SIZE);

  /**
   * Compress src[sOff, sOff+len) into dst at dOff (len ≤ 49152). Returns the size, or -1 as soon as the
   * output would reach `limit` bytes. Never writes at or past dOff + limit.
   */
  compress(src: Uint8Array, sOff: number, len: number, dst: Uint8Array, dOff: number, limit: number): number {
    const end = dOff + limit;
    let op = dOff;
    const inEnd = sOff + len;
    let t: number; // pending literals (from ii to the end)
    let ii = sOff;
    if (len <= 20) {
      t = len;
    } else {
      const dict = this.dict;
      dict.fill(0);
      const ipEnd = inEnd - 20;
      let ip = sOff + 5;
      for (;;) {
        let mPos = 0;
        let found = false;
        while (ip < ipEnd) {
          const dv = load32(src, ip);
          const di = Math.imul(dv, 0x1824429d) >>> (32 - D_BITS);
          mPos = sOff + dict[di]!;
          dict[di] = ip - sOff;
          if (dv === load32(src, mPos) && mPos < ip) {
            found = true;
            break;
          }
          ip += 1 + ((ip - ii) >>> 5);
        }
        if (!found) break;
        // literals [ii, ip)
        const lit = ip - ii;
        if (lit !== 0) {
          op = emitLiterals(src, ii, lit, dst, op, dOff, end);
          if (op < 0) return -1;
        }
        let mLen = 4;
        while (ip + mLen < inEnd && src[ip + mLen] === src[mPos + mLen]) mLen++;
        let mOff = ip - mPos;
        ip += mLen;
        ii = ip;
        if (op + 4 + Math.ceil(mLen / 255) >= end) return -1;
        if (mLen <= M2_MAX_LEN && mOff <= M2_MAX_OFFSET) {
          mOff -= 1;
          dst[op++] = ((mLen - 1) << 5) | ((mOff & 7) << 2);
          dst[op++] = mOff >>> 3;
        } else if (mOff <= M3_MAX_OFFSET) {
          mOff -= 1;
          if (mLen <= M3_MAX_LEN) {
            dst[op++] = M3_MARKER | (mLen - 2);
          } else {
            mLen -= M3_MAX_LEN;
            dst[op++] = M3_MARKER;
            while (mLen > 255) {
              mLen -= 255;
              dst[op++] = 0;
            }
            dst[op++] = mLen;
          }
          dst[op++] = (mOff << 2) & 0xff;
          dst[op++] = (mOff >>> 6) & 0xff;
        } else {
          mOff -= 0x4000;
          if (mLen <= M4_MAX_LEN) {
            dst[op++] = M4_MARKER | ((mOff >>> 11) & 8) | (mLen - 2);
          } else {
            mLen -= M4_MAX_LEN;
            dst[op++] = M4_MARKER | ((mOff >>> 11) & 8);
            while (mLen > 255) {
              mLen -= 255;
              dst[op++] = 0;
            }
            dst[op++] = mLen;
          }
          dst[op++] = (mOff << 2) & 0xff;
          dst[op++] = (mOff >>> 6) & 0xff;
        }
        if (ip >= ipEnd) break;
      }
      t = inEnd - ii;
    }
    if (t > 0) {
      if (op === dOff && t <= 238) {
        if (op + 1 + t >= end) return -1;
        dst[op++] = 17 + t;
        dst.set(src.subarray(ii, ii + t), op);
        op += t;
      } else {
        op = emitLiterals(src, ii, t, dst, op, dOff, end);
        if (op < 0) return -1;
      }
    }
    if (op + 3 >= end) return -1;
    dst[op++] = M4_MARKER | 1;
    dst[op++] = 0;
    dst[op++] = 0;
    return op - dOff;
  }
}

/** Emit a literal run of `t` bytes after a match (or at the start when op === start and t > 3). */
function emitLiterals(src: Uint8Array, from: number, t: number, dst: Uint8Array, op: number, start: number, end: number): number {
  if (op + 3 + Math.ceil(t / 255) + t >= end) return -1;
  if (t <= 3 && op !== start) {
    dst[op - 2]! |= t;
  } else if (t <= 18) {
    dst[op++] = t - 3;
  } else {
    let tt = t - 18;
    dst[op++] = 0;
    while (tt > 255) {
      tt -= 255;
      dst[op++] = 0;
    }
    dst[op++] = tt;
  }
  copyBytes(src, from, t, dst, op);
  return op + t;
}

/** memcpy that avoids creating a view for short copies. */
export function copyBytes(src: Uint8Array, from: number, n: number, dst: Uint8Array, to: number): void {
  if (n < 32) {
    for (let i = 0; i < n; i++) dst[to + i] = src[from + i]!;
  } else dst.set(src.subarray(from, from + n), to);
}

/**
 * Decompress an LZO1X stream into dst[0, expected). Returns true on success (the end-of-stream marker
 * was reached, all input consumed and exactly `expected` bytes produced); false on malformed input,
 * out-of-bounds references or overruns — never throws, never reads or writes out of bounds.
 */
export function lzoDecompress(src: Uint8Array, dst: Uint8Array, expected: number): boolean {
  const n = src.length;
  if (expected > dst.length) return false;
  let ip = 0;
  let op = 0;
  let state = 0;

  const copyLiterals = (l: number): boolean => {
    if (ip + l > n || op + l > expected) return false;
    dst.set(src.subarray(ip, ip + l), op);
    ip += l;
    op += l;
    return true;
  };
  const copyMatch = (dist: number, l: number): boolean => {
    if (dist <= 0 || dist > op || op + l > expected) return false;
    let from = op - dist;
    if (dist >= l) {
      dst.copyWithin(op, from, from + l);
      op += l;
    } else {
      for (let i = 0; i < l; i++) dst[op++] = dst[from++]!;
    }
    return true;
  };
  /** 255-run length extension: returns -1 on truncation. */
  const extLen = (): number => {
    let z = 0;
    for (;;) {
      if (ip >= n) return -1;
      const b = src[ip++]!;
      if (b !== 0) return z + b;
      z += 255;
      if (z > 0x7fffffff) return -1;
    }
  };

  if (n === 0) return false;
  if (src[0]! > 17) {
    const t = src[0]! - 17;
    ip = 1;
    if (!copyLiterals(t)) return false;
    state = t < 4 ? t : 4;
  }
  for (;;) {
    if (ip >= n) return false;
    const inst = src[ip++]!;
    let len: number;
    let dist: number;
    let s: number;
    if (inst < 16) {
      if (state === 0) {
        let l = inst & 15;
        if (l === 0) {
          const e = extLen();
          if (e < 0) return false;
          l = 15 + e;
        }
        if (!copyLiterals(l + 3)) return false;
        state = 4;
        continue;
      }
      if (ip >= n) return false;
      const h = src[ip++]!;
      s = inst & 3;
      if (state === 4) {
        len = 3;
        dist = (h << 2) + ((inst >>> 2) & 3) + 2049;
      } else {
        len = 2;
        dist = (h << 2) + ((inst >>> 2) & 3) + 1;
      }
    } else if (inst < 32) {
      let l = inst & 7;
      if (l === 0) {
        const e = extLen();
        if (e < 0) return false;
        l = 7 + e;
      }
      if (ip + 2 > n) return false;
      const le = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      dist = 16384 + ((inst & 8) << 11) + (le >>> 2);
      s = le & 3;
      len = l + 2;
      if (dist === 16384) {
        // end of stream
        return len === 3 && ip === n && op === expected;
      }
    } else if (inst < 64) {
      let l = inst & 31;
      if (l === 0) {
        const e = extLen();
        if (e < 0) return false;
        l = 31 + e;
      }
      if (ip + 2 > n) return false;
      const le = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      dist = (le >>> 2) + 1;
      s = le & 3;
      len = l + 2;
    } else {
      if (ip >= n) return false;
      const h = src[ip++]!;
      len = inst < 128 ? 3 + ((inst >>> 5) & 1) : 5 + ((inst >>> 5) & 3);
      dist = (h << 3) + ((inst >>> 2) & 7) + 1;
      s = inst & 3;
    }
    if (!copyMatch(dist, len)) return false;
    if (s > 0 && !copyLiterals(s)) return false;
    state = s;
  }
}
