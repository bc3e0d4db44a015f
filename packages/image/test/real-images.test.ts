// The image sources against real crashed guests (test/guest): the raw RAM file, QEMU's ELF and
// makedumpfile's kdump file must agree byte for byte where they overlap. VICOVER_BIG_IMAGES=1 adds
// big4 (4.5 GiB, `pc` layout: file [3G,…) → GPA [4G,…)), which takes minutes to build.
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemorySource } from '@vicover/core';
import { isVcvError } from '@vicover/errors';
// @ts-ignore — plain ESM helpers without type declarations
import { ensureImage, readMeta } from '../../../test/guest/images.mjs';
import { openImage, openRawImage } from '../src/index.js';
import { missingCommands } from '../../../test/tools/commands.mjs';

const canBuild = missingCommands(['qemu-system-x86_64', 'makedumpfile']).length === 0;
const names = ['small4', 'mixed5', ...(process.env.VICOVER_BIG_IMAGES ? ['big4'] : [])];

for (const name of names) {
  describe.skipIf(!canBuild)(`image sources on ${name}`, () => {
    let dir: string;
    let meta: any;
    let raw: MemorySource;
    let elf: MemorySource;
    let kdump: MemorySource;

    beforeAll(async () => {
      dir = await ensureImage(name);
      meta = await readMeta(dir);
      raw = openRawImage(path.join(dir, 'ram.img'), { layout: 'auto' });
      elf = await openImage(path.join(dir, 'vmcore.elf'));
      kdump = await openImage(path.join(dir, 'md31.kdump'));
    }, 30 * 60_000);
    afterAll(async () => {
      await Promise.all([raw, elf, kdump].map((s) => s?.close()));
    });

    it('maps the RAM file like QEMU did (meta.json ranges)', () => {
      expect(raw.description).toContain(`layout ${meta.ram.layout}`);
      const expected = meta.ram.ranges.map((r: { gpa: number; size: number }) => ({ start: r.gpa, end: r.gpa + r.size }));
      expect(raw.ranges).toEqual(expected);
      expect(elf.notes.some((n) => n.name === 'VMCOREINFO')).toBe(!!meta.vmcoreinfo?.elfHasNote);
      expect(kdump.notes.some((n) => n.name === 'VMCOREINFO')).toBe(true);
    });

    it('reads the same bytes from the raw file, the ELF and the kdump file', async () => {
      const a = Buffer.alloc(4096);
      const b = Buffer.alloc(4096);
      let compared = 0;
      let kdumpCompared = 0;
      for (const r of raw.ranges) {
        const pages = (r.end - r.start) / 4096;
        for (let i = 0; i < 256; i++) {
          const gpa = r.start + Math.floor((i * 7919 * pages) / 256 % pages) * 4096;
          await raw.read(gpa, a, 0, 4096);
          await elf.read(gpa, b, 0, 4096);
          expect(b.equals(a), `gpa 0x${gpa.toString(16)} raw vs ELF`).toBe(true);
          compared++;
          try {
            kdump.readSync(gpa, b, 0, 4096);
            expect(b.equals(a), `gpa 0x${gpa.toString(16)} raw vs kdump`).toBe(true);
            kdumpCompared++;
          } catch (e) {
            // makedumpfile excluded it (free, cache, user …)
            expect(isVcvError(e, 'VCV_ERR_PAGE_NOT_DUMPED')).toBe(true);
          }
        }
      }
      expect(compared).toBeGreaterThan(0);
      expect(kdumpCompared).toBeGreaterThan(0);
    });
  });
}
