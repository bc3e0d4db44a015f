/**
 * `struct disk_dump_header` (makedumpfile diskdump_mod.h), x86-64 layout, 464 bytes, at offset 0.
 *
 *   @0   char signature[8]        "KDUMP   "
 *   @8   int header_version       6
 *   @12  struct new_utsname       6 × char[65]: sysname nodename release version machine domainname
 *   @408 struct timeval timestamp i64 tv_sec, i64 tv_usec (after 6 bytes of padding)
 *   @424 unsigned status          codec bits, 0x8 incomplete
 *   @428 int block_size           page size
 *   @432 int sub_hdr_size         blocks of sub-header + notes
 *   @436 unsigned bitmap_blocks   blocks of both bitmaps
 *   @440 unsigned max_mapnr       32-bit, obsolete (max_mapnr_64 in the sub-header)
 *   @444 total_ram_blocks, @448 device_blocks, @452 written_blocks, @456 current_cpu
 *   @460 int nr_cpus
 */
import { BinReader, BinWriter } from '../binary.js';

export const KDUMP_SIGNATURE = 'KDUMP   ';
export const DISKDUMP_SIGNATURE = 'DISKDUMP';
export const DISK_DUMP_HEADER_SIZE = 464;
export const UTS_FIELD_LEN = 65;
export const UTS_FIELDS = ['sysname', 'nodename', 'release', 'version', 'machine', 'domainname'] as const;

export interface Utsname {
  sysname: string;
  nodename: string;
  release: string;
  version: string;
  machine: string;
  domainname: string;
}

export interface DiskDumpHeader {
  signature: string;
  headerVersion: number;
  utsname: Utsname;
  timestamp: { sec: bigint; usec: bigint };
  status: number;
  blockSize: number;
  subHdrSize: number;
  bitmapBlocks: number;
  maxMapnr: number;
  totalRamBlocks: number;
  deviceBlocks: number;
  writtenBlocks: number;
  currentCpu: number;
  nrCpus: number;
}

export function encodeDiskDumpHeader(h: DiskDumpHeader): Buffer {
  const w = new BinWriter(DISK_DUMP_HEADER_SIZE);
  w.buf.write(h.signature.padEnd(8, '\0').slice(0, 8), 0, 8, 'latin1');
  w.i32(8, h.headerVersion);
  UTS_FIELDS.forEach((f, i) => w.cstr(12 + i * UTS_FIELD_LEN, UTS_FIELD_LEN, h.utsname[f]));
  w.i64(408, h.timestamp.sec).i64(416, h.timestamp.usec);
  w.u32(424, h.status).i32(428, h.blockSize).i32(432, h.subHdrSize).u32(436, h.bitmapBlocks).u32(440, h.maxMapnr);
  w.u32(444, h.totalRamBlocks).u32(448, h.deviceBlocks).u32(452, h.writtenBlocks).u32(456, h.currentCpu).i32(460, h.nrCpus);
  return w.buf;
}

export function decodeDiskDumpHeader(buf: Buffer, file?: string): DiskDumpHeader {
  const r = new BinReader(buf, 'kdump header (disk_dump_header)', 0, file);
  r.need(0, DISK_DUMP_HEADER_SIZE);
  const uts = {} as Utsname;
  UTS_FIELDS.forEach((f, i) => (uts[f] = r.cstr(12 + i * UTS_FIELD_LEN, UTS_FIELD_LEN)));
  return {
    signature: r.bytes(0, 8).toString('latin1'),
    headerVersion: r.i32(8),
    utsname: uts,
    timestamp: { sec: r.i64(408), usec: r.i64(416) },
    status: r.u32(424),
    blockSize: r.i32(428),
    subHdrSize: r.i32(432),
    bitmapBlocks: r.u32(436),
    maxMapnr: r.u32(440),
    totalRamBlocks: r.u32(444),
    deviceBlocks: r.u32(448),
    writtenBlocks: r.u32(452),
    currentCpu: r.u32(456),
    nrCpus: r.i32(460),
  };
}
