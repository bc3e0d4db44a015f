/**
 * `vicover dump` through the CLI on damaged and wrong inputs (the real small4 guest, test/guest):
 *
 * - guest data corrupted in a sparse copy of the RAM file (VMCOREINFO, page tables, struct pages):
 *   a warning naming the problem, exit 0, and a full dump whose every page python3-libkdumpfile reads
 *   back equal to the (corrupted) source — never a crash, never a silently wrong selection;
 * - bad files and bad use: coded errors (`VCV_ERR_*` on stderr and in the --json error object) and
 *   the exit codes of docs/cli.md; an existing output is never touched without --force.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KdumpReader } from '../../packages/dumpfmt/src/index.js';
import { openRawImage } from '../../packages/image/src/index.js';
import { LinuxKernel } from '../../plugins/linux/src/kernel.js';
// @ts-ignore — plain ESM helpers without type declarations (the guest-image factory)
import { ensureImage, readMeta } from '../guest/images.mjs';
import { PS, explain, missingTools, mode, pageCheck, vicover, type CliRun } from './helpers.js';

const missing = missingTools();

function expectCoded(r: CliRun, status: number, code: string) {
  expect(r.status, explain(r)).toBe(status);
  expect(r.stderr).toContain(`vicover: error ${code}:`);
  expect(r.stderr).not.toMatch(/^Node\.js v|^\s+at .*\(file:/m); // no uncaught exception
  if (r.args.includes('--json')) expect(r.json?.error?.code, explain(r)).toBe(code);
}

describe.skipIf(missing.length > 0)(`vicover dump on damaged input (small4)${missing.length ? ` — missing ${missing.join(', ')}` : ''}`, () => {
  let dir = '';
  let tmp = '';
  let meta: any;
  let md: any;
  let copy = '';
  let kernel: LinuxKernel;
  let closeKernel: () => Promise<void>;
  let n = 0;
  const out = () => path.join(tmp, `out-${++n}.kdump`);

  beforeAll(async () => {
    dir = await ensureImage('small4');
    meta = await readMeta(dir);
    md = JSON.parse(fs.readFileSync(path.join(dir, 'makedumpfile.json'), 'utf8'));
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vcv-dump-err-'));
    copy = path.join(tmp, 'ram.img');
    execFileSync('cp', ['--sparse=always', path.join(dir, 'ram.img'), copy]);
    const src = openRawImage(copy, { layout: meta.ram.layout });
    kernel = await LinuxKernel.open(src);
    closeKernel = () => src.close();
  }, 30 * 60_000);

  afterAll(async () => {
    await closeKernel?.();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Patch the copy (small4 is flat: file offset = GPA), run `fn`, restore the bytes. */
  function withPatches<T>(patches: { gpa: number; bytes: Uint8Array }[], fn: () => T): T {
    const fd = fs.openSync(copy, 'r+');
    const saved = patches.map((p) => {
      const b = Buffer.alloc(p.bytes.length);
      fs.readSync(fd, b, 0, b.length, p.gpa);
      fs.writeSync(fd, p.bytes, 0, p.bytes.length, p.gpa);
      return { gpa: p.gpa, bytes: b };
    });
    fs.fsyncSync(fd);
    try {
      return fn();
    } finally {
      for (const s of saved) fs.writeSync(fd, s.bytes, 0, s.bytes.length, s.gpa);
      fs.closeSync(fd);
    }
  }
  const xorByte = (gpa: number, x: number) => {
    const b = Buffer.alloc(1);
    const fd = fs.openSync(copy, 'r');
    fs.readSync(fd, b, 0, 1, gpa);
    fs.closeSync(fd);
    return { gpa, bytes: Uint8Array.of(b[0]! ^ x) };
  };

  /** Dump the patched copy; check the warning, the full dump, and every page with libkdumpfile. */
  function fullDumpWith(patches: { gpa: number; bytes: Uint8Array }[], code: string, reason: RegExp, alsoText = false) {
    const o = out();
    withPatches(patches, () => {
      if (alsoText) {
        // For people: the warning on stderr, the full dump named on stdout.
        const t = out();
        const r = vicover(['dump', copy, '-o', t]);
        expect(r.status, explain(r)).toBe(0);
        expect(r.stderr).toContain(code);
        expect(r.stdout).toContain(`FULL DUMP  ${code}`);
        fs.rmSync(t);
      }
      const r = vicover(['dump', copy, '-o', o, '--json']);
      expect(r.status, explain(r)).toBe(0);
      const j = r.json;
      expect(j.fallback).toMatchObject({ plugin: 'linux', code });
      expect(j.fallback.reason).toMatch(reason);
      expect(j.warnings.map((w: { code: string }) => w.code)).toContain(code);
      // All RAM is kept; at level 31 only zero pages are left out (found by content, as makedumpfile does).
      expect(j.pages.excluded).toEqual({ zero: j.pages.excluded.zero, cache: 0, privateCache: 0, user: 0, free: 0, offline: 0 });
      expect(j.pages.dumped + j.pages.excluded.zero).toBe(meta.ram.size / PS);
      expect(j.complete).toBe(true);
      expect(mode(o).toString(8)).toBe('600');
      const [c] = pageCheck([{ dump: o, source: { kind: 'raw', path: copy, ranges: meta.ram.ranges } }]);
      expect(c!.dumped).toBe(meta.ram.size / PS);
      expect(c!.checked).toBe(c!.dumped);
      expect(c!.readErrors, c!.firstReadErrors.join('; ')).toBe(0);
      expect(c!.mismatches, `first pfns ${c!.firstMismatches.join(', ')}`).toBe(0);
    });
    fs.rmSync(o);
  }

  it('VMCOREINFO: one RAM copy corrupt → the other is used, with a warning; counts still makedumpfile’s', () => {
    const copies: { offset: number }[] = meta.vmcoreinfo.ramScanCopies;
    expect(copies).toHaveLength(2);
    const at = kernel.info.text.indexOf('SYMBOL(init_top_pgt)=') + 'SYMBOL(init_top_pgt)='.length + 8;
    const o = out();
    withPatches([xorByte(copies[0]!.offset + at, 0x01)], () => {
      const r = vicover(['dump', copy, '-o', o, '--json']);
      expect(r.status, explain(r)).toBe(0);
      expect(r.json.fallback).toBeUndefined();
      expect(r.json.warnings.map((w: { code: string }) => w.code)).toEqual(['VCV_ERR_VMCOREINFO_INVALID']);
      expect(r.json.pages.excluded.free).toBe(md.d31.freePages);
      expect(r.json.pages.excluded.user).toBe(md.d31.userPages);
    });
    fs.rmSync(o);
  });

  it('VMCOREINFO: both RAM copies corrupt → warning, exit 0, full dump libkdumpfile reads', () => {
    const copies: { offset: number }[] = meta.vmcoreinfo.ramScanCopies;
    const at = kernel.info.text.indexOf('SYMBOL(init_top_pgt)=') + 'SYMBOL(init_top_pgt)='.length + 8;
    fullDumpWith(copies.map((c) => xorByte(c.offset + at, 0x01)), 'VCV_ERR_VMCOREINFO_NOT_FOUND', /init_top_pgt|VMCOREINFO/, true);
  });

  it('page tables: a garbled top-level entry for the vmemmap → warning, exit 0, full dump libkdumpfile reads', () => {
    const levels = kernel.paging.levels;
    const base = kernel.sections().vmemmapBase!;
    const idx = Number((base >> BigInt(12 + 9 * (levels - 1))) & 0x1ffn);
    // Bit 39 of the entry: the next table moves 512 GiB away, outside RAM.
    fullDumpWith([xorByte(kernel.paging.rootPa + idx * 8 + 4, 0x80)], 'VCV_ERR_INTROSPECTION', /outside guest RAM|not present/);
  });

  it('struct pages: an impossible buddy order → warning, exit 0, full dump libkdumpfile reads', () => {
    const base = kernel.sections().vmemmapBase!;
    const L = kernel.pageLayout;
    const buf = new Uint8Array(L.size);
    let head = -1;
    for (let pfn = 4096; pfn < 65536 && head < 0; pfn++) {
      kernel.kmem.readSync(base + BigInt(pfn * L.size), buf, 0, L.size);
      if (new DataView(buf.buffer).getInt32(L.offMapcount, true) === L.buddyType) head = pfn;
    }
    expect(head).toBeGreaterThan(0);
    const privatePa = kernel.paging.translate(base + BigInt(head * L.size + L.offPrivate));
    fullDumpWith([{ gpa: privatePa, bytes: Uint8Array.of(40) }], 'VCV_ERR_INTROSPECTION', /impossible values/);
  });

  it('a nonexistent input: VCV_ERR_INPUT_NOT_FOUND, exit 66, no output', () => {
    const o = out();
    expectCoded(vicover(['dump', path.join(tmp, 'no-such.img'), '-o', o, '--json']), 66, 'VCV_ERR_INPUT_NOT_FOUND');
    expect(fs.existsSync(o)).toBe(false);
    expectCoded(vicover(['dmesg', path.join(tmp, 'no-such.img'), '--panic']), 66, 'VCV_ERR_INPUT_NOT_FOUND');
  });

  it('an existing output: VCV_ERR_OUTPUT_EXISTS, exit 73, the file untouched; --force replaces it (0600)', () => {
    const o = out();
    fs.writeFileSync(o, 'keep me\n', { mode: 0o644 });
    expectCoded(vicover(['dump', copy, '-o', o, '--json']), 73, 'VCV_ERR_OUTPUT_EXISTS');
    expect(fs.readFileSync(o, 'utf8')).toBe('keep me\n');
    const r = vicover(['dump', copy, '-o', o, '--json', '--force']);
    expect(r.status, explain(r)).toBe(0);
    expect(mode(o).toString(8)).toBe('600');
    const k = KdumpReader.openSync(o);
    expect(k.pages).toBe(r.json.pages.dumped + r.json.pages.excluded.zero);
    k.close();
    fs.rmSync(o);
  });

  it('truncated and empty images: coded errors, exit 65, never an uncaught exception', () => {
    // A raw RAM file that is not a whole number of pages.
    const raw = path.join(tmp, 'cut.img');
    fs.writeFileSync(raw, Buffer.alloc(PS * 3 + 100));
    let o = out();
    expectCoded(vicover(['dump', raw, '-o', o, '--json']), 65, 'VCV_ERR_IMAGE_LAYOUT');
    expect(fs.existsSync(o)).toBe(false);
    // Empty.
    const empty = path.join(tmp, 'empty.img');
    fs.writeFileSync(empty, '');
    expectCoded(vicover(['dump', empty, '-o', out(), '--json']), 65, 'VCV_ERR_IMAGE_LAYOUT');
    // QEMU's ELF cut inside its RAM segment: the headers promise pages the file does not hold.
    const elf = path.join(tmp, 'cut.elf');
    execFileSync('cp', ['--sparse=always', path.join(dir, 'vmcore.elf'), elf]);
    fs.truncateSync(elf, 100 * 2 ** 20);
    o = out();
    const r = vicover(['dump', elf, '-o', o, '--json']);
    expectCoded(r, 65, 'VCV_ERR_PAGE_NOT_DUMPED');
    expect(r.json.error.message).toMatch(/past the end of the file/);
    if (fs.existsSync(o)) {
      // What was written stays readable and says it is incomplete.
      const k = KdumpReader.openSync(o);
      expect(k.incomplete).toBe(true);
      k.close();
    }
    fs.rmSync(elf);
    // A kdump file cut inside its headers.
    const kd = path.join(tmp, 'cut.kdump');
    fs.writeFileSync(kd, fs.readFileSync(path.join(dir, 'md31.kdump')).subarray(0, 2000));
    expectCoded(vicover(['dump', kd, '-o', out(), '--json']), 65, 'VCV_ERR_FORMAT_TRUNCATED');
    expectCoded(vicover(['dmesg', kd, '--json']), 65, 'VCV_ERR_FORMAT_TRUNCATED');
  });

  it('re-filters a kdump input (makedumpfile’s own -d 31 file) like makedumpfile does', () => {
    const o = out();
    const r = vicover(['dump', path.join(dir, 'md31.kdump'), '-o', o, '--json']);
    expect(r.status, explain(r)).toBe(0);
    expect(r.json.pages.excluded.free).toBe(md.d31.freePages);
    expect(r.json.pages.excluded.cache).toBe(md.d31.nonPrivateCachePages);
    expect(r.json.pages.excluded.user).toBe(md.d31.userPages);
    // Nothing the input lacked was invented: what we dump is what makedumpfile kept, less zero pages.
    expect(r.json.pages.dumped).toBe(md.d31.remainingPages);
  });

  it('bad options: VCV_ERR_USAGE, exit 64', () => {
    expectCoded(vicover(['dump', copy, '-o', out(), '--level', '40', '--json']), 64, 'VCV_ERR_USAGE');
    expectCoded(vicover(['dump', copy, '-o', out(), '--format', 'elf', '--compress', 'zlib', '--json']), 64, 'VCV_ERR_USAGE');
    expectCoded(vicover(['dump', copy, '-o', out(), '--exclude', 'zero,bogus', '--json']), 64, 'VCV_ERR_USAGE');
    expect(vicover(['dump', copy, '-o', out(), '--compress', 'lz4']).status).toBe(64);
  });
});
