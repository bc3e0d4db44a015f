/**
 * `vicover dump` as a user runs it (the built CLI, `--json`), on real crashed Debian 6.1 guests
 * (test/guest image sets, docs/guests.md), against makedumpfile 1.7.2 on the same crash:
 *
 * - page counts per class equal makedumpfile's at -d 31 and -d 16 (free pages exactly, zero pages
 *   counted as makedumpfile counts them), from the raw RAM file and from QEMU's ELF;
 * - the kept pages are exactly makedumpfile's (its kdump bitmaps), so nothing it keeps is dropped;
 * - every page of our kdump files, raw, zlib and snappy, read back by python3-libkdumpfile, equals the
 *   source page;
 * - makedumpfile --dump-dmesg on our file prints the guest's log with the panic line, and
 *   `vicover dmesg --panic` finds the same line in the raw RAM file;
 * - ELF output is readable by readelf, makedumpfile and libkdumpfile;
 * - `--free-rule refcount-zero` reports what it drops beyond the buddy rule, and the counts add up;
 * - the `--json` object has the documented shape; output files are 0600.
 *
 * small4 (4-level, vmcoreinfo device) and mixed5 (5-level, VMCOREINFO only in RAM) always; big4 and
 * big5 (≥ 4 GiB, `pc` layout) with VICOVER_BIG_IMAGES=1. Each dump is made once and shared by the
 * assertions. No timing is asserted.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KdumpReader } from '../../packages/dumpfmt/src/index.js';
// @ts-ignore — plain ESM helpers without type declarations (the guest-image factory)
import { ensureImage, readMeta } from '../guest/images.mjs';
import { EXCLUDED_KEYS, IMAGES, PANIC, PS, explain, missingTools, mode, pageCheck, run, vicover, type CliRun, type PageCheck, type PageSource } from './helpers.js';

const missing = missingTools();

interface MdCounts {
  originalPages: number;
  excludedPages: number;
  zeroPages: number;
  nonPrivateCachePages: number;
  privateCachePages: number;
  userPages: number;
  freePages: number;
  offlinePages: number;
  hwpoisonPages: number;
  remainingPages: number;
}

/** The dumps made once per image: input file, options. */
const DUMPS = {
  r31: { input: 'ram.img', args: ['-d', '31'] },
  r31z: { input: 'ram.img', args: ['-d', '31', '--compress', 'zlib'] },
  r31s: { input: 'ram.img', args: ['-d', '31', '--compress', 'snappy'] },
  r31l: { input: 'ram.img', args: ['-d', '31', '--compress', 'lzo'] },
  r16: { input: 'ram.img', args: ['-d', '16'] },
  r16z: { input: 'ram.img', args: ['-d', '16', '--compress', 'zlib'] },
  e31z: { input: 'vmcore.elf', args: ['-d', '31', '--compress', 'zlib'] },
  elf31: { input: 'ram.img', args: ['-d', '31', '--format', 'elf'] },
  rc31: { input: 'ram.img', args: ['-d', '31', '--free-rule', 'refcount-zero'] },
} as const;
type Key = keyof typeof DUMPS;
const KDUMPS: Key[] = ['r31', 'r31z', 'r31s', 'r31l', 'r16', 'r16z', 'e31z', 'rc31'];

const excludedOf = (r: CliRun): Record<string, number> => r.json.pages.excluded;

for (const name of IMAGES) {
  describe.skipIf(missing.length > 0)(`vicover dump, real guest ${name}${missing.length ? ` — missing ${missing.join(', ')}` : ''}`, () => {
    let dir = '';
    let tmp = '';
    let meta: any;
    let md: { d31: MdCounts; d16: MdCounts };
    let ramPages = 0;
    /** pfn runs of the raw RAM file's RAM */
    let ramRuns: [number, number][] = [];
    /** QEMU's extra ELF segments (the BIOS ROM), not in the RAM file */
    let bios = { pages: 0, zero: 0, countedByMakedumpfile: false };
    const runs = {} as Record<Key, CliRun>;
    const checks = {} as Record<Key, PageCheck>;
    let elfCheck: PageCheck;
    let md16: { ram: Uint8Array; dump: Uint8Array; maxPfn: number };
    const out = (k: string) => path.join(tmp, `${k}.${k.startsWith('elf') ? 'elf' : 'kdump'}`);

    beforeAll(async () => {
      dir = await ensureImage(name);
      meta = await readMeta(dir);
      md = JSON.parse(fs.readFileSync(path.join(dir, 'makedumpfile.json'), 'utf8'));
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), `vcv-dump-${name}-`));
      ramPages = meta.ram.size / PS;
      ramRuns = (meta.ram.ranges as { gpa: number; size: number }[]).map((r) => [r.gpa / PS, (r.gpa + r.size) / PS]);

      // The BIOS ROM segment QEMU adds to its ELF: makedumpfile counts it only when it lies inside the
      // kernel's memory map (the ≥ 4 GiB guests); it is never in the raw RAM file.
      const elf = fs.openSync(path.join(dir, 'vmcore.elf'), 'r');
      const page = Buffer.alloc(PS);
      for (const seg of meta.ram.nonRamElfSegments as { gpa: number; size: number }[]) {
        const load = (meta.elf.loads as { offset: number; paddr: number; size: number }[]).find((l) => l.paddr === seg.gpa)!;
        for (let off = 0; off < seg.size; off += PS) {
          fs.readSync(elf, page, 0, PS, load.offset + off);
          bios.pages++;
          if (page.every((b) => b === 0)) bios.zero++;
        }
      }
      fs.closeSync(elf);
      bios.countedByMakedumpfile = md.d31.originalPages === ramPages + bios.pages;

      const took: string[] = [];
      const time = <T>(what: string, fn: () => T): T => {
        const t0 = performance.now();
        const v = fn();
        took.push(`${what} ${((performance.now() - t0) / 1000).toFixed(1)}s`);
        return v;
      };
      for (const [k, d] of Object.entries(DUMPS) as [Key, (typeof DUMPS)[Key]][]) {
        runs[k] = time(k, () => vicover(['dump', path.join(dir, d.input), '-o', out(k), '--json', ...d.args]));
      }

      const raw: PageSource = { kind: 'raw', path: path.join(dir, 'ram.img'), ranges: meta.ram.ranges };
      const elfSrc: PageSource = { kind: 'elf', path: path.join(dir, 'vmcore.elf') };
      const jobs = KDUMPS.filter((k) => runs[k].status === 0).map((k) => ({ dump: out(k), source: DUMPS[k].input === 'ram.img' ? raw : elfSrc }));
      const hasElf = runs.elf31.status === 0 && runs.r31.status === 0;
      const results = time('libkdumpfile', () => pageCheck([...jobs, ...(hasElf ? [{ dump: out('elf31'), source: raw, mask: out('r31') }] : [])]));
      jobs.forEach((j, i) => (checks[KDUMPS.filter((k) => runs[k].status === 0)[i]!] = results[i]!));
      if (hasElf) elfCheck = results[results.length - 1]!;

      // makedumpfile's own -d 16 selection, for a pfn-by-pfn comparison (its bitmaps only).
      const m16 = path.join(tmp, 'md16.kdump');
      const r = time('makedumpfile -d 16', () => run('makedumpfile', ['-d', '16', path.join(dir, 'vmcore.fixed.elf'), m16]));
      if (r.status !== 0) throw new Error(`makedumpfile -d 16: ${r.stdout}${r.stderr}`);
      const k = KdumpReader.openSync(m16);
      md16 = { ram: Uint8Array.from(k.ram.bytes), dump: Uint8Array.from(k.dump.bytes), maxPfn: k.maxPfn };
      k.close();
      fs.rmSync(m16);
      console.log(`${name}: set-up ${took.join(', ')} (load average ${os.loadavg()[0]!.toFixed(1)})`);
    }, 60 * 60_000);

    afterAll(() => {
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('every run exits 0 with the documented --json object, complete, no warnings, 0600', () => {
      for (const [k, r] of Object.entries(runs) as [Key, CliRun][]) {
        expect(r.status, explain(r)).toBe(0);
        const j = r.json;
        expect(Object.keys(j.pages).sort(), k).toEqual(['dumped', 'excluded', 'total']);
        expect(Object.keys(j.pages.excluded).sort(), k).toEqual(EXCLUDED_KEYS);
        for (const v of [j.pages.total, j.pages.dumped, ...Object.values<number>(j.pages.excluded), j.bytesWritten]) {
          expect(Number.isSafeInteger(v) && v >= 0, `${k}: ${v}`).toBe(true);
        }
        expect(typeof j.seconds).toBe('number');
        expect(j.seconds).toBeGreaterThan(0);
        const sum = j.pages.dumped + Object.values<number>(j.pages.excluded).reduce((a, b) => a + b, 0);
        expect(sum, `${k}: dumped + Σ excluded = total`).toBe(j.pages.total);
        expect(j.pages.total, k).toBe(ramPages + (DUMPS[k].input === 'vmcore.elf' ? bios.pages : 0));
        expect(j.complete, k).toBe(true);
        expect(j.fallback, k).toBeUndefined();
        expect(j.warnings, k).toEqual([]);
        expect(j.file).toBe(out(k));
        expect(j.bytesWritten).toBeLessThanOrEqual(fs.statSync(out(k)).size);
        expect(mode(out(k)).toString(8), `${k} mode`).toBe('600');
      }
    });

    it('-d 31: every class equals makedumpfile’s, zero pages included (raw RAM and QEMU’s ELF)', () => {
      const m = md.d31;
      const classes = { cache: m.nonPrivateCachePages, privateCache: m.privateCachePages, user: m.userPages, free: m.freePages, offline: m.offlinePages + m.hwpoisonPages };
      // From the RAM file, the ROM pages makedumpfile saw in the ELF are not there; from the ELF we dump
      // the ROM segment even where makedumpfile clips it (outside the kernel's memory map).
      const biosKept = bios.pages - bios.zero;
      for (const k of ['r31', 'r31z', 'r31s'] as Key[]) {
        expect(excludedOf(runs[k]), k).toEqual({ ...classes, zero: m.zeroPages - (bios.countedByMakedumpfile ? bios.zero : 0) });
        expect(runs[k].json.pages.dumped, k).toBe(m.remainingPages - (bios.countedByMakedumpfile ? biosKept : 0));
      }
      expect(excludedOf(runs.e31z)).toEqual({ ...classes, zero: m.zeroPages + (bios.countedByMakedumpfile ? 0 : bios.zero) });
      expect(runs.e31z.json.pages.dumped).toBe(m.remainingPages + (bios.countedByMakedumpfile ? 0 : biosKept));
      console.log(`${name}: -d 31 ${JSON.stringify(excludedOf(runs.r31))} kept ${runs.r31.json.pages.dumped}; makedumpfile kept ${m.remainingPages}; ROM segment ${bios.pages} pages (${bios.zero} zero), counted by makedumpfile: ${bios.countedByMakedumpfile}`);
    });

    it('-d 16: free pages exactly makedumpfile’s, nothing else excluded', () => {
      for (const k of ['r16', 'r16z'] as Key[]) {
        expect(excludedOf(runs[k]), k).toEqual({ zero: 0, cache: 0, privateCache: 0, user: 0, free: md.d16.freePages, offline: md.d16.offlinePages });
        expect(runs[k].json.pages.dumped, k).toBe(runs[k].json.pages.total - md.d16.freePages - md.d16.offlinePages);
      }
    });

    it('keeps exactly the pages makedumpfile keeps (its kdump bitmaps, pfn by pfn)', () => {
      const mdk = KdumpReader.openSync(path.join(dir, 'md31.kdump'));
      const md31 = { dump: Uint8Array.from(mdk.dump.bytes), maxPfn: mdk.maxPfn };
      mdk.close();
      const bit = (b: Uint8Array, pfn: number) => pfn >> 3 < b.length && (b[pfn >> 3]! & (1 << (pfn & 7))) !== 0;
      const compare = (ours: string, theirs: { dump: Uint8Array; maxPfn: number }) => {
        const k = KdumpReader.openSync(ours);
        const d = k.dump.bytes;
        let droppedKept = 0;
        let keptDropped = 0;
        for (const [s, e] of ramRuns) {
          for (let pfn = s; pfn < e; pfn++) {
            const a = bit(d, pfn);
            const b = pfn < theirs.maxPfn && bit(theirs.dump, pfn);
            if (b && !a) droppedKept++;
            if (a && !b) keptDropped++;
          }
        }
        k.close();
        return { droppedKept, keptDropped };
      };
      for (const k of ['r31', 'r31z', 'e31z', 'rc31'] as Key[]) {
        const c = compare(out(k), md31);
        expect(c.droppedKept, `${k}: pages makedumpfile -d 31 keeps that we drop`).toBe(k === 'rc31' ? runs.rc31.json.filter.linux.refcountZero.extraPages : 0);
        expect(c.keptDropped, `${k}: pages makedumpfile -d 31 drops that we keep`).toBe(0);
      }
      for (const k of ['r16', 'r16z'] as Key[]) {
        expect(compare(out(k), md16), k).toEqual({ droppedKept: 0, keptDropped: 0 });
      }
    });

    it('libkdumpfile reads every page of our kdump files (raw, zlib, lzo, snappy) and each equals the source page', () => {
      for (const k of KDUMPS) {
        const c = checks[k];
        expect(c, `${k} was checked`).toBeDefined();
        const j = runs[k].json;
        const level = Number(DUMPS[k].args[DUMPS[k].args.indexOf('-d') + 1]);
        // Zero pages we exclude stay in the 2nd bitmap and share one descriptor (as makedumpfile's).
        expect(c.dumped, k).toBe(j.pages.dumped + (level & 1 ? j.pages.excluded.zero : 0));
        expect(c.checked, k).toBe(c.dumped);
        expect(c.readErrors, `${k}: ${c.firstReadErrors.join('; ')}`).toBe(0);
        expect(c.mismatches, `${k}: first pfns ${c.firstMismatches.join(', ')}`).toBe(0);
        expect(c.outsideSource, k).toBe(0);
        expect(c.format).toBe('diskdump');
      }
    });

    it('makedumpfile --dump-dmesg on our dump prints the guest’s log; vicover dmesg --panic finds the panic in raw RAM', () => {
      const dmesg = fs.readFileSync(path.join(dir, 'dmesg.txt'), 'utf8');
      expect(dmesg).toContain(PANIC);
      for (const k of ['r31z', 'r31l', 'r16'] as Key[]) {
        const txt = path.join(tmp, `${k}.dmesg`);
        const r = run('makedumpfile', ['--dump-dmesg', out(k), txt]);
        expect(r.status, r.stdout + r.stderr).toBe(0);
        expect(fs.readFileSync(txt, 'utf8'), k).toBe(dmesg);
      }
      const fromRam = vicover(['dmesg', path.join(dir, 'ram.img'), '--panic']);
      expect(fromRam.status, explain(fromRam)).toBe(0);
      expect(fromRam.stdout.trim()).toBe(PANIC);
      const fromOurs = vicover(['dmesg', out('r31z'), '--panic', '--json']);
      expect(fromOurs.status, explain(fromOurs)).toBe(0);
      expect(fromOurs.json).toEqual({ panic: PANIC });
    });

    it('ELF output: readelf, makedumpfile and libkdumpfile read it; dumped pages equal the source, excluded ones read as zeros', () => {
      const f = out('elf31');
      const l = run('readelf', ['-W', '-h', '-l', '-n', f]);
      expect(l.status, l.stderr).toBe(0);
      expect(l.stdout).toMatch(/Type:\s+CORE/);
      expect(l.stdout).toMatch(/VMCOREINFO/);
      expect(l.stdout.split('\n').filter((x) => /^\s+LOAD/.test(x)).length).toBeGreaterThan(0);
      const txt = path.join(tmp, 'elf31.dmesg');
      const r = run('makedumpfile', ['--dump-dmesg', f, txt]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(fs.readFileSync(txt, 'utf8')).toContain(PANIC);
      expect(elfCheck.format).toBe('elf');
      expect(elfCheck.checked).toBe(checks.r31.dumped);
      expect(elfCheck.mismatches, `first pfns ${elfCheck.firstMismatches.join(', ')}`).toBe(0);
      expect(elfCheck.readErrors).toBe(0);
      expect(elfCheck.nonZeroMaskedOut).toBe(0);
      expect(excludedOf(runs.elf31)).toEqual(excludedOf(runs.r31));
    });

    it('--free-rule refcount-zero: reports its extra exclusions over the buddy rule, and the counts add up', () => {
      const b = runs.r31.json;
      const rc = runs.rc31.json;
      expect(b.filter.linux.rule).toBe('buddy');
      expect(rc.filter.linux.rule).toBe('refcount-zero');
      const extra = rc.filter.linux.refcountZero;
      expect(extra.excluded).toBe(true);
      expect(b.filter.linux.refcountZero.excluded).toBe(false);
      // The buddy run measures the same figures without applying them.
      expect({ ...b.filter.linux.refcountZero, excluded: true }).toEqual(extra);
      expect(extra.extraPages).toBeGreaterThan(0);
      expect(extra.tailPages).toBeLessThanOrEqual(extra.extraPages);
      expect(rc.pages.excluded.free).toBe(b.pages.excluded.free + extra.extraPages);
      for (const c of ['cache', 'privateCache', 'user', 'offline']) expect(rc.pages.excluded[c], c).toBe(b.pages.excluded[c]);
      // Some of the extra pages are zero pages the buddy run counted as "zero".
      expect(b.pages.dumped + b.pages.excluded.zero - (rc.pages.dumped + rc.pages.excluded.zero)).toBe(extra.extraPages);
      console.log(`${name}: refcount-zero drops ${extra.extraPages} more pages (${extra.tailPages} compound tails, ${extra.typedPages} typed), ${b.pages.excluded.zero - rc.pages.excluded.zero} of them zero pages`);
    });

    it('vicover inspect describes our files', () => {
      const i = vicover(['inspect', out('r31z'), '--json']);
      expect(i.status, explain(i)).toBe(0);
      expect(i.json).toMatchObject({ format: 'kdump', compression: 'zlib', incomplete: false, osrelease: meta.kernel.osrelease, dumpLevel: 31 });
      expect(i.json.pages.dumped).toBe(checks.r31z.dumped);
    });
  });
}
