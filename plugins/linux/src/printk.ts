/**
 * The kernel log from the lockless printk ring buffer (Linux ≥ 5.10, kernel/printk/printk_ringbuffer.h),
 * read the way makedumpfile's `dump_lockless_dmesg()` does, with every offset from VMCOREINFO:
 *
 *   SYMBOL(prb)                  address of the `prb` pointer → struct printk_ringbuffer
 *   printk_ringbuffer.desc_ring  prb_desc_ring { count_bits, descs, infos, head_id, tail_id }
 *   printk_ringbuffer.text_data_ring  prb_data_ring { size_bits, data }
 *   prb_desc { state_var (atomic_long_t), text_blk_lpos { begin, next } }
 *   printk_info { seq, ts_nsec, text_len, caller_id, … }
 *
 * Records are read from tail_id to head_id: a descriptor counts when its state is committed or
 * finalized and its id matches; its text block starts with the 8-byte descriptor id; a block that
 * wraps starts at offset 0; text_len is clamped to the block.
 *
 * Not in VMCOREINFO: the byte after `facility` holds `flags:5, level:3` (bit-fields, GCC x86-64:
 * level in the top three bits), at OFFSET(printk_info.text_len) + 3; and the state encoding of
 * state_var (top two bits: 0 reserved, 1 committed, 2 finalized, 3 reusable).
 *
 * Guest data is untrusted: the ring sizes are capped, every index is taken modulo the ring, the
 * id walk is bounded by the ring size, and nonsense is VCV_ERR_PRINTK.
 */
import { VcvError, isVcvError } from '@vicover/errors';
import type { KernelMemory } from './kmem.js';
import { LeReader, hex } from './reader.js';
import type { Vmcoreinfo } from './vmcoreinfo.js';

const U64 = (1n << 64n) - 1n;
const DESC_FLAGS_SHIFT = 62n;
const DESC_ID_MASK = (1n << 62n) - 1n;
export const DESC_COMMITTED = 1;
export const DESC_FINALIZED = 2;
export const DESC_REUSABLE = 3;
export const PANIC_PREFIX = 'Kernel panic - not syncing: ';

export interface PrintkLayout {
  readonly prb: bigint;
  readonly sizeofRingbuffer: number;
  readonly offDescRing: number;
  readonly offTextDataRing: number;
  readonly offCountBits: number;
  readonly offDescs: number;
  readonly offInfos: number;
  readonly offHeadId: number;
  readonly offTailId: number;
  readonly offSizeBits: number;
  readonly offData: number;
  readonly sizeofDesc: number;
  readonly offStateVar: number;
  readonly offTextBlkLpos: number;
  readonly offLposBegin: number;
  readonly offLposNext: number;
  readonly sizeofInfo: number;
  readonly offSeq: number;
  readonly offTsNsec: number;
  readonly offTextLen: number;
  readonly offCallerId: number | undefined;
  /** OFFSET(atomic_long_t.counter) (0 on every kernel so far). */
  readonly offCounter: number;
}

export function printkLayout(info: Vmcoreinfo): PrintkLayout {
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (isVcvError(e, 'VCV_ERR_VMCOREINFO_INVALID')) {
        throw new VcvError('VCV_ERR_PRINTK', `the lockless printk ring buffer is not described: ${e.message}`, {}, { cause: e });
      }
      throw e;
    }
  };
  return wrap(() => {
    const l: PrintkLayout = {
      prb: info.symbol('prb'),
      sizeofRingbuffer: info.size('printk_ringbuffer'),
      offDescRing: info.offset('printk_ringbuffer.desc_ring'),
      offTextDataRing: info.offset('printk_ringbuffer.text_data_ring'),
      offCountBits: info.offset('prb_desc_ring.count_bits'),
      offDescs: info.offset('prb_desc_ring.descs'),
      offInfos: info.offset('prb_desc_ring.infos'),
      offHeadId: info.offset('prb_desc_ring.head_id'),
      offTailId: info.offset('prb_desc_ring.tail_id'),
      offSizeBits: info.offset('prb_data_ring.size_bits'),
      offData: info.offset('prb_data_ring.data'),
      sizeofDesc: info.size('prb_desc'),
      offStateVar: info.offset('prb_desc.state_var'),
      offTextBlkLpos: info.offset('prb_desc.text_blk_lpos'),
      offLposBegin: info.offset('prb_data_blk_lpos.begin'),
      offLposNext: info.offset('prb_data_blk_lpos.next'),
      sizeofInfo: info.size('printk_info'),
      offSeq: info.offset('printk_info.seq'),
      offTsNsec: info.offset('printk_info.ts_nsec'),
      offTextLen: info.offset('printk_info.text_len'),
      offCallerId: info.optOffset('printk_info.caller_id'),
      offCounter: info.optOffset('atomic_long_t.counter') ?? 0,
    };
    if (l.sizeofRingbuffer > 4096 || l.sizeofDesc > 256 || l.sizeofInfo > 4096 || l.sizeofDesc < 8 || l.sizeofInfo < 20) {
      throw new VcvError('VCV_ERR_PRINTK', 'printk structure sizes in VMCOREINFO are impossible', {});
    }
    return l;
  });
}

export interface PrintkRecord {
  readonly seq: bigint;
  readonly tsNsec: bigint;
  /** Log level 0–7 (from the printk_info bit-field). */
  readonly level: number;
  readonly facility: number;
  readonly callerId: number | undefined;
  /** The text bytes as stored (no trailing newline). */
  readonly bytes: Uint8Array;
  /** The text decoded as UTF-8. */
  readonly text: string;
}

export interface PrintkLimits {
  /** Most bytes read for descriptors + infos + text data (default 128 MiB; Debian's log is ~0.6 MiB). */
  readonly maxBytes?: number;
}

export interface PrintkLog {
  readonly records: PrintkRecord[];
  /** Descriptors skipped (reserved, reusable, id mismatch, data-less). */
  readonly skipped: number;
  readonly descriptors: number;
  readonly dataBytes: number;
}

function perr(msg: string, details: Record<string, unknown> = {}): VcvError {
  return new VcvError('VCV_ERR_PRINTK', msg, details);
}

/** Read the whole log. Throws VCV_ERR_PRINTK (wrapping translation / range errors) on nonsense. */
export async function readPrintk(kmem: KernelMemory, layout: PrintkLayout, limits: PrintkLimits = {}): Promise<PrintkLog> {
  try {
    return await readPrintkUnchecked(kmem, layout, limits);
  } catch (e) {
    if (isVcvError(e, 'VCV_ERR_PRINTK')) throw e;
    if (e instanceof VcvError) {
      throw new VcvError('VCV_ERR_PRINTK', `the printk ring buffer cannot be read: ${e.message}`, { cause: e.code }, { cause: e });
    }
    throw e;
  }
}

async function readPrintkUnchecked(kmem: KernelMemory, l: PrintkLayout, limits: PrintkLimits): Promise<PrintkLog> {
  const maxBytes = limits.maxBytes ?? 128 * 1024 * 1024;
  const rbAddr = kmem.u64(l.prb);
  const rb = kmem.struct(rbAddr, l.sizeofRingbuffer, 'struct printk_ringbuffer', 'VCV_ERR_PRINTK');
  const dr = l.offDescRing;
  const countBits = rb.u32(dr + l.offCountBits);
  if (countBits > 30) throw perr(`prb_desc_ring.count_bits = ${countBits} is out of range`, { countBits });
  const count = 2 ** countBits;
  const descsAddr = rb.u64(dr + l.offDescs);
  const infosAddr = rb.u64(dr + l.offInfos);
  const headId = rb.u64(dr + l.offHeadId + l.offCounter);
  const tailId = rb.u64(dr + l.offTailId + l.offCounter);
  const tr = l.offTextDataRing;
  const sizeBits = rb.u32(tr + l.offSizeBits);
  if (sizeBits > 40) throw perr(`prb_data_ring.size_bits = ${sizeBits} is out of range`, { sizeBits });
  const dataSize = 2 ** sizeBits;
  const total = count * (l.sizeofDesc + l.sizeofInfo) + dataSize;
  if (total > maxBytes) {
    throw perr(`the ring buffer would need ${total} bytes (count_bits ${countBits}, size_bits ${sizeBits}), more than the limit ${maxBytes}`, {
      countBits,
      sizeBits,
    });
  }
  const dataAddr = rb.u64(tr + l.offData);

  const span = (headId - tailId) & DESC_ID_MASK;
  if (span >= BigInt(count)) {
    throw perr(`tail_id ${hex(tailId)} and head_id ${hex(headId)} are ${span} apart, more than the ${count} descriptors`, {
      headId: hex(headId),
      tailId: hex(tailId),
    });
  }

  const descBuf = new Uint8Array(count * l.sizeofDesc);
  await kmem.read(descsAddr, descBuf, 0, descBuf.length);
  const infoBuf = new Uint8Array(count * l.sizeofInfo);
  await kmem.read(infosAddr, infoBuf, 0, infoBuf.length);
  const data = new Uint8Array(dataSize);
  await kmem.read(dataAddr, data, 0, dataSize);
  const descs = new LeReader(descBuf, 'VCV_ERR_PRINTK', 'prb descriptors');
  const infos = new LeReader(infoBuf, 'VCV_ERR_PRINTK', 'printk_info array');

  const records: PrintkRecord[] = [];
  let skipped = 0;
  const n = Number(span) + 1;
  let id = tailId;
  const bigCount = BigInt(count);
  const bigSize = BigInt(dataSize);
  for (let k = 0; k < n; k++, id = (id + 1n) & DESC_ID_MASK) {
    const idx = Number(id % bigCount);
    const d = idx * l.sizeofDesc;
    const sv = descs.u64(d + l.offStateVar + l.offCounter);
    const state = Number((sv >> DESC_FLAGS_SHIFT) & 3n);
    if ((sv & DESC_ID_MASK) !== id || (state !== DESC_COMMITTED && state !== DESC_FINALIZED)) {
      skipped++;
      continue;
    }
    let begin = Number(descs.u64(d + l.offTextBlkLpos + l.offLposBegin) % bigSize);
    const next = Number(descs.u64(d + l.offTextBlkLpos + l.offLposNext) % bigSize);
    if (begin === next) {
      skipped++;
      continue;
    }
    if (begin > next) begin = 0;
    begin += 8; // the block starts with the descriptor id
    const inf = idx * l.sizeofInfo;
    let textLen = infos.u16(inf + l.offTextLen);
    if (next < begin) {
      skipped++;
      continue;
    }
    if (next - begin < textLen) textLen = next - begin;
    const bytes = data.slice(begin, begin + textLen);
    const lf = infos.u8(inf + l.offTextLen + 3);
    records.push({
      seq: infos.u64(inf + l.offSeq),
      tsNsec: infos.u64(inf + l.offTsNsec),
      level: lf >> 5,
      facility: infos.u8(inf + l.offTextLen + 2),
      callerId: l.offCallerId !== undefined ? infos.u32(inf + l.offCallerId) : undefined,
      bytes,
      text: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'),
    });
  }
  return { records, skipped, descriptors: count, dataBytes: dataSize };
}

/** The panic message (`Kernel panic - not syncing: …`, first line), the last one in the log, if any. */
export function findPanicLine(records: readonly PrintkRecord[]): string | undefined {
  for (let i = records.length - 1; i >= 0; i--) {
    const t = records[i]!.text;
    const at = t.indexOf(PANIC_PREFIX);
    if (at >= 0) {
      const line = t.slice(at);
      const nl = line.indexOf('\n');
      return (nl >= 0 ? line.slice(0, nl) : line).trimEnd();
    }
  }
  return undefined;
}

/** Timestamp as `[    1.234567]` (makedumpfile/dmesg style). */
export function formatTimestamp(tsNsec: bigint): string {
  const secs = tsNsec / 1_000_000_000n;
  const micros = (tsNsec % 1_000_000_000n) / 1000n;
  return `[${secs.toString().padStart(5, ' ')}.${micros.toString().padStart(6, '0')}]`;
}

/** The last `n` log lines, each `[ts] text` (multi-line records are split). */
export function lastLines(records: readonly PrintkRecord[], n: number): string[] {
  const out: string[] = [];
  for (let i = records.length - 1; i >= 0 && out.length < n; i--) {
    const r = records[i]!;
    const lines = r.text.split('\n');
    for (let j = lines.length - 1; j >= 0 && out.length < n; j--) {
      out.push(j === 0 ? `${formatTimestamp(r.tsNsec)} ${lines[j]}` : `${' '.repeat(15)}${lines[j]}`);
    }
  }
  return out.reverse();
}

/**
 * The log formatted byte-for-byte as `makedumpfile --dump-dmesg` writes it: `[%5lld.%06ld] ` then the
 * text, newlines indented under the text, other non-printable bytes as `\xNN` (C locale; bytes ≥ 0x80
 * go through a signed char, so they print as `\xffffffNN`, as makedumpfile's sprintf does).
 */
export function formatDmesg(records: readonly PrintkRecord[]): string {
  let out = '';
  for (const r of records) {
    const prefix = `${formatTimestamp(r.tsNsec)} `;
    let s = prefix;
    for (const c of r.bytes) {
      if (c === 0x0a) s += '\n' + ' '.repeat(prefix.length);
      else if ((c >= 0x20 && c <= 0x7e) || c === 0x09 || c === 0x0b || c === 0x0c || c === 0x0d) s += String.fromCharCode(c);
      else if (c >= 0x80) s += `\\x${((0xffffff00 | c) >>> 0).toString(16)}`;
      else s += `\\x${c.toString(16).padStart(2, '0')}`;
    }
    out += s + '\n';
  }
  return out;
}
