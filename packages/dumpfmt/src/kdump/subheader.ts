/**
 * `struct kdump_sub_header` (x86-64, 104 bytes) at offset block_size. Fields by header version:
 *
 *   @0  u64 phys_base          @8  i32 dump_level (v1)   @12 i32 split (v2)
 *   @16 u64 start_pfn (v2)     @24 u64 end_pfn (v2)      — obsolete, see the _64 fields
 *   @32 u64 offset_vmcoreinfo  @40 u64 size_vmcoreinfo   (v3)
 *   @48 u64 offset_note        @56 u64 size_note         (v4)
 *   @64 u64 offset_eraseinfo   @72 u64 size_eraseinfo    (v5)
 *   @80 u64 start_pfn_64       @88 u64 end_pfn_64        @96 u64 max_mapnr_64 (v6)
 *
 * All 64-bit fields are bigint here; the reader validates and converts offsets against the file size.
 */
import { BinReader, BinWriter } from '../binary.js';

export const KDUMP_SUB_HEADER_SIZE = 104;

export interface KdumpSubHeader {
  physBase: bigint;
  dumpLevel: number;
  split: number;
  startPfn: bigint;
  endPfn: bigint;
  offsetVmcoreinfo: bigint;
  sizeVmcoreinfo: bigint;
  offsetNote: bigint;
  sizeNote: bigint;
  offsetEraseinfo: bigint;
  sizeEraseinfo: bigint;
  startPfn64: bigint;
  endPfn64: bigint;
  maxMapnr64: bigint;
}

export function encodeKdumpSubHeader(s: KdumpSubHeader): Buffer {
  const w = new BinWriter(KDUMP_SUB_HEADER_SIZE);
  w.u64(0, s.physBase).i32(8, s.dumpLevel).i32(12, s.split).u64(16, s.startPfn).u64(24, s.endPfn);
  w.u64(32, s.offsetVmcoreinfo).u64(40, s.sizeVmcoreinfo).u64(48, s.offsetNote).u64(56, s.sizeNote);
  w.u64(64, s.offsetEraseinfo).u64(72, s.sizeEraseinfo).u64(80, s.startPfn64).u64(88, s.endPfn64).u64(96, s.maxMapnr64);
  return w.buf;
}

/** Decode; fields a `headerVersion` does not have are returned as 0. */
export function decodeKdumpSubHeader(buf: Buffer, headerVersion: number, base = 0, file?: string): KdumpSubHeader {
  const r = new BinReader(buf, 'kdump sub-header', base, file);
  const v = headerVersion;
  const len = v >= 6 ? 104 : v >= 5 ? 80 : v >= 4 ? 64 : v >= 3 ? 48 : v >= 2 ? 32 : 12;
  r.need(0, len);
  return {
    physBase: r.u64(0),
    dumpLevel: v >= 1 ? r.i32(8) : 0,
    split: v >= 2 ? r.i32(12) : 0,
    startPfn: v >= 2 ? r.u64(16) : 0n,
    endPfn: v >= 2 ? r.u64(24) : 0n,
    offsetVmcoreinfo: v >= 3 ? r.u64(32) : 0n,
    sizeVmcoreinfo: v >= 3 ? r.u64(40) : 0n,
    offsetNote: v >= 4 ? r.u64(48) : 0n,
    sizeNote: v >= 4 ? r.u64(56) : 0n,
    offsetEraseinfo: v >= 5 ? r.u64(64) : 0n,
    sizeEraseinfo: v >= 5 ? r.u64(72) : 0n,
    startPfn64: v >= 6 ? r.u64(80) : 0n,
    endPfn64: v >= 6 ? r.u64(88) : 0n,
    maxMapnr64: v >= 6 ? r.u64(96) : 0n,
  };
}
