/**
 * Simulated guest images: the plan's counts add up, the RAM file is sparse, images are cached, the
 * memory source serves the same bytes whether data pages are written or generated and whether struct
 * pages come from the file or from the plan, and released ranges read as zero.
 */
import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VcvError } from '@vicover/core';
import { ensureImage, normalizeSpec, PB_BYTES, releaseRange, SimGuestMemory, type GuestImage } from '@vicover/plugin-simhost';

const work = mkdtempSync(path.join(tmpdir(), 'vcv-simhost-guest-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const MiB = 1024 * 1024;

function fileBytes(img: GuestImage, gpa: number, len: number): Buffer {
  const fd = fs.openSync(img.ramFile, 'r');
  try {
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, gpa);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

describe('simulated guest images', () => {
  it('rejects sizes that are not whole memory sections', () => {
    expect(() => normalizeSpec({ memoryMiB: 300 })).toThrow(VcvError);
    expect(() => normalizeSpec({ memoryMiB: 512, freePercent: 99 })).toThrow(/freePercent/);
  });

  it('are sparse, cached, and their classes add up to every RAM page', async () => {
    const spec = normalizeSpec({ memoryMiB: 1024, freePercent: 60, content: 'generated' });
    const img = await ensureImage(spec, work);
    const st = fs.statSync(img.ramFile);
    expect(st.size).toBe(1024 * MiB);
    expect(st.blocks * 512).toBeLessThan(64 * MiB); // kernel structures and struct pages only
    const c = img.meta.intended;
    expect(c.free + c.cache + c.privateCache + c.user + c.zero + c.remaining).toBe(img.meta.ramPages);
    expect(c.free / img.meta.ramPages).toBeGreaterThan(0.55);
    const again = await ensureImage(spec, work);
    expect(again.meta.createdAt).toBe(img.meta.createdAt);
  });

  it('serve the same bytes with data pages written or generated, and struct pages from the file or the plan', async () => {
    const w = await ensureImage(normalizeSpec({ memoryMiB: 512, freePercent: 40, content: 'written', freeTails: 'holes', seed: 9 }), work);
    const g = await ensureImage(normalizeSpec({ memoryMiB: 512, freePercent: 40, content: 'generated', freeTails: 'holes', seed: 9 }), work);
    const mw = new SimGuestMemory(w);
    const mg = new SimGuestMemory(g);
    const a = Buffer.alloc(4 * MiB);
    const b = Buffer.alloc(4 * MiB);
    for (let gpa = 0; gpa < 512 * MiB; gpa += 4 * MiB) {
      await mw.read(gpa, a, 0, a.length);
      await mg.read(gpa, b, 0, b.length);
      expect(a.equals(b), `bytes at 0x${gpa.toString(16)}`).toBe(true);
      // The written image's file holds exactly what the memory source serves.
      expect(fileBytes(w, gpa, a.length).equals(a), `file bytes at 0x${gpa.toString(16)}`).toBe(true);
    }
    // Unaligned small reads agree with large ones.
    const small = Buffer.alloc(100);
    for (const gpa of [img0(w), 0x1234567, 300 * MiB + 4000]) {
      mg.readSync(gpa, small, 0, small.length);
      await mw.read(gpa, a, 0, 4096 * 2);
      expect(small.equals(a.subarray(0, 100))).toBe(true);
    }
    await mw.close();
    await mg.close();
  });

  it('read released ranges as zero; reads outside RAM fail', async () => {
    const img = await ensureImage(normalizeSpec({ memoryMiB: 512, freePercent: 10, content: 'generated' }), work);
    const released = new Uint8Array(512 * MiB / PB_BYTES);
    const m = new SimGuestMemory(img, { released });
    const b = Buffer.alloc(2 * MiB);
    const at = 400 * MiB;
    await m.read(at, b, 0, b.length);
    expect(b.some((x) => x !== 0)).toBe(true);
    expect(releaseRange(released, { start: at, end: at + 2 * MiB })).toBe(2 * MiB);
    expect(releaseRange(released, { start: at, end: at + 2 * MiB })).toBe(0);
    await m.read(at, b, 0, b.length);
    expect(b.every((x) => x === 0)).toBe(true);
    expect(() => releaseRange(released, { start: 4096, end: 8192 })).toThrow(VcvError);
    expect(() => m.readSync(512 * MiB - 8, b, 0, 16)).toThrow(/outside/);
    await m.close();
  });
});

/** Somewhere inside the kernel image (structures + text). */
function img0(img: GuestImage): number {
  return Number(img.meta.cr3) - 0x1000 + 7;
}
