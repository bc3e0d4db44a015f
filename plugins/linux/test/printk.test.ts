import { describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { LinuxKernel } from '../src/kernel.js';
import { findPanicLine, formatDmesg, formatTimestamp, lastLines, printkLayout, readPrintk } from '../src/printk.js';
import { buildSyntheticKernel } from '../src/synth/index.js';

const MiB = 1024 * 1024;

describe('printk ring buffer', () => {
  it('reads records in order with seq, timestamp, level and text', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB, printkCountBits: 5, printkSizeBits: 12 });
    k.log({ text: 'Linux version 6.1.0', level: 5, tsNsec: 0n });
    k.log({ text: 'second line', level: 6, tsNsec: 1_234_567_890n });
    k.log({ text: 'Kernel panic - not syncing: sysrq triggered crash', level: 0, tsNsec: 7_172_752_000n });
    const lk = await LinuxKernel.open(k.mem);
    const log = await lk.printk();
    expect(log.records.map((r) => r.text)).toEqual(['Linux version 6.1.0', 'second line', 'Kernel panic - not syncing: sysrq triggered crash']);
    expect(log.records.map((r) => r.seq)).toEqual([0n, 1n, 2n]);
    expect(log.records.map((r) => r.level)).toEqual([5, 6, 0]);
    expect(log.records[1]!.tsNsec).toBe(1_234_567_890n);
    expect(findPanicLine(log.records)).toBe('Kernel panic - not syncing: sysrq triggered crash');
    expect(formatTimestamp(7_172_752_000n)).toBe('[    7.172752]');
    expect(lastLines(log.records, 2)).toEqual(['[    1.234567] second line', '[    7.172752] Kernel panic - not syncing: sysrq triggered crash']);
    const t = await lk.triage(1);
    expect(t.panic).toBe('Kernel panic - not syncing: sysrq triggered crash');
  });

  it('follows descriptor and text wrap-around (ids past DESC0, text blocks at the ring start)', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB, printkCountBits: 4, printkSizeBits: 10 });
    const all: string[] = [];
    for (let i = 0; i < 300; i++) {
      const text = `msg ${i} ` + 'abcdefghij'.repeat(i % 7);
      all.push(text);
      k.log({ text });
    }
    const lk = await LinuxKernel.open(k.mem);
    const log = await lk.printk();
    expect(log.records.length).toBeGreaterThan(3);
    expect(log.records.length).toBeLessThan(16);
    // The survivors are the newest records, in order, intact.
    const texts = log.records.map((r) => r.text);
    expect(texts).toEqual(all.slice(all.length - texts.length));
    const seqs = log.records.map((r) => Number(r.seq));
    expect(seqs).toEqual(seqs.map((_, i) => 300 - seqs.length + i));
  });

  it('formats like makedumpfile --dump-dmesg (indented newlines, escaped bytes)', () => {
    const rec = (text: Buffer, ts: bigint) => ({ seq: 0n, tsNsec: ts, level: 6, facility: 0, callerId: 0, bytes: text, text: text.toString('utf8') });
    const out = formatDmesg([rec(Buffer.from('a\nb\x01c\té'), 12_000_345_678n)]);
    expect(out).toBe('[   12.000345] a\n               b\\x01c\t\\xffffffc3\\xffffffa9\n');
  });

  it('rejects nonsense ring parameters with VCV_ERR_PRINTK', async () => {
    const cases: [string, (k: ReturnType<typeof buildSyntheticKernel>, rb: number) => void][] = [
      ['count_bits huge', (k, rb) => k.mem.writeU32(rb, 40)],
      ['size_bits too large for the limit', (k, rb) => k.mem.writeU32(rb + 48, 33)],
      ['descs pointer unmapped', (k, rb) => k.mem.writeU64(rb + 8, 0xffffc90000000000n)],
      ['tail far behind head', (k, rb) => k.mem.writeU64(rb + 32, 5n)],
      ['prb pointer garbage', (k) => k.mem.writeU64(k.pa(k.symbols.prb!), 0x1234n)],
    ];
    for (const [what, corrupt] of cases) {
      const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
      k.log({ text: 'hello' });
      const lk = await LinuxKernel.open(k.mem);
      corrupt(k, k.pa(k.symbols.printk_rb_static!));
      lk.paging.clearCache();
      await expect(lk.printk(), what).rejects.toMatchObject({ code: 'VCV_ERR_PRINTK' });
    }
  });

  it('clamps text_len to the block and skips bad descriptors', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB, printkCountBits: 4 });
    k.log({ text: 'one' });
    k.log({ text: 'two' });
    k.log({ text: 'three' });
    const l = printkLayout(k.info);
    const lk = await LinuxKernel.open(k.mem);
    const before = await readPrintk(lk.kmem, l);
    expect(before.records).toHaveLength(3);
    // Find the infos array and make record 0's text_len absurd, and break record 1's id.
    const rb = k.pa(k.symbols.printk_rb_static!);
    const infos = k.pa(k.mem.readU64(rb + 16));
    const descs = k.pa(k.mem.readU64(rb + 8));
    const headId = k.mem.readU64(rb + 24);
    const id0 = headId - 2n;
    const id1 = headId - 1n;
    k.mem.writeU16(infos + Number(id0 % 16n) * 88 + 16, 60000);
    k.mem.writeU64(descs + Number(id1 % 16n) * 24, (2n << 62n) | (id1 + 16n));
    const after = await readPrintk(lk.kmem, l);
    expect(after.records.map((r) => r.text)).toEqual(['one\0\0\0\0\0', 'three']); // clamped to the 16-byte block
    expect(after.skipped).toBeGreaterThanOrEqual(1);
  });

  it('random ring bytes never throw anything but VcvError', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB, printkCountBits: 6, printkSizeBits: 12 });
    for (let i = 0; i < 100; i++) k.log({ text: `line ${i}` });
    const lk = await LinuxKernel.open(k.mem);
    const rb = k.pa(k.symbols.printk_rb_static!);
    const descs = k.pa(k.mem.readU64(rb + 8));
    let seed = 5;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let round = 0; round < 50; round++) {
      const junk = new Uint8Array(64 * 24);
      for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rnd() * 256);
      k.mem.write(descs, junk);
      const ids = new Uint8Array(16);
      for (let i = 0; i < 16; i++) ids[i] = Math.floor(rnd() * 256);
      if (round % 2) k.mem.write(rb + 24, ids);
      lk.paging.clearCache();
      try {
        const log = await lk.printk();
        for (const r of log.records) expect(r.bytes.length).toBeLessThanOrEqual(4096);
      } catch (e) {
        expect(isVcvError(e)).toBe(true);
      }
    }
  });
});
