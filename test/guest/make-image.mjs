#!/usr/bin/env node
// Produce a *crashed guest image set*: boot a real guest, load it, crash it, dump it, and record
// ground truth from the real makedumpfile. See docs/guests.md.
//
//   node test/guest/make-image.mjs --name NAME --mem 1024 --cpu max,la57=off --vmcoreinfo on|off \
//        --load anon:200,tmpfs:100,cache:150 --out DIR [--smp 2] [--warm PATH] [--stamp] [--force]
//
// DIR (0700) receives, all 0600:
//   ram.img            raw guest RAM (the memory-backend-file), sparse; see meta.json "ram" for layout
//   vmcore.elf         QEMU dump-guest-memory ELF (paging=false), as QEMU wrote it (zero blocks made sparse)
//   vmcore.fixed.elf   sparse copy with the program headers moved to 0x40 (what makedumpfile 1.7.2 reads)
//   vmcoreinfo.txt     the guest's VMCOREINFO (ELF note if present, else scanned from ram.img)
//   md31.kdump         makedumpfile -d 31 output (kdump-compressed format, uncompressed pages)
//   makedumpfile-d31.{stdout,stderr}, makedumpfile-d16.{stdout,stderr}, makedumpfile.json
//   dmesg.txt          makedumpfile --dump-dmesg md31.kdump
//   serial.log, qemu.log, cpu-registers.txt (HMP info registers -a), mtree.txt (HMP info mtree -f)
//   meta.json          written last: the set is complete when it exists

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildGuest, startGuest, PANIC_LINE } from './guest.mjs';
import { readElf, makeMakedumpfileCompatibleCopy } from './elf.mjs';
import { vmcoreinfoFromElf, vmcoreinfoFromRam, parseVmcoreinfo } from './vmcoreinfo.mjs';

const execFileP = promisify(execFile);
const GiB = 1024 ** 3;

/** QEMU pc: RAM ≥ 3.5 GiB is split at 3 GiB; the rest goes above 4 GiB (checked below). */
export function expectedRanges(memBytes) {
  if (memBytes >= 0xe0000000) {
    return {
      layout: 'pc',
      ranges: [
        { fileOffset: 0, gpa: 0, size: 3 * GiB },
        { fileOffset: 3 * GiB, gpa: 4 * GiB, size: memBytes - 3 * GiB },
      ],
    };
  }
  return { layout: 'flat', ranges: [{ fileOffset: 0, gpa: 0, size: memBytes }] };
}

const CLASSES = {
  originalPages: 'Original pages',
  excludedPages: 'Excluded pages',
  zeroPages: 'Pages filled with zero',
  nonPrivateCachePages: 'Non-private cache pages',
  privateCachePages: 'Private cache pages',
  userPages: 'User process data pages',
  freePages: 'Free pages',
  hwpoisonPages: 'Hwpoison pages',
  offlinePages: 'Offline pages',
  remainingPages: 'Remaining pages',
  memoryHolePages: 'Memory Hole',
  totalPages: 'Total pages',
};

/** Parse makedumpfile's report ("Excluded pages   : 0x…"). */
export function parseMakedumpfileReport(text) {
  /** @type {Record<string, number>} */
  const out = {};
  for (const [key, label] of Object.entries(CLASSES)) {
    const m = text.match(new RegExp(`^\\s*${label}\\s*:\\s*0x([0-9a-fA-F]+)`, 'm'));
    if (m) out[key] = parseInt(m[1], 16);
  }
  const wb = text.match(/^Write bytes\s*:\s*(\d+)/m);
  if (wb) out.writeBytes = Number(wb[1]);
  return out;
}

async function run(cmd, args, { stdoutFile, stderrFile, timeoutMs = 900_000 } = {}) {
  const t0 = performance.now();
  let res;
  try {
    res = await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 256 << 20 });
    res.code = 0;
  } catch (e) {
    res = { stdout: e.stdout ?? '', stderr: e.stderr ?? String(e), code: e.code ?? 1 };
  }
  const seconds = (performance.now() - t0) / 1000;
  if (stdoutFile) await fsp.writeFile(stdoutFile, res.stdout, { mode: 0o600 });
  if (stderrFile) await fsp.writeFile(stderrFile, res.stderr, { mode: 0o600 });
  return { ...res, seconds };
}

/**
 * Compare sampled pages of every ELF PT_LOAD with the RAM file through `ranges`.
 * Segments (or parts) outside the RAM file are reported as non-RAM (e.g. the BIOS ROM).
 */
async function checkLayout(elfFile, ramFile, elf, ranges, samplesPerGiB = 4096) {
  const ef = await fsp.open(elfFile, 'r');
  const rf = await fsp.open(ramFile, 'r');
  const a = Buffer.alloc(4096);
  const b = Buffer.alloc(4096);
  let sampled = 0;
  let nonZero = 0;
  let mismatches = 0;
  let coveredBytes = 0;
  const nonRam = [];
  // deterministic PRNG for the random part of the sample
  let s = 0x9e3779b9;
  const rnd = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
  try {
    for (const p of elf.loads) {
      let covered = 0;
      for (const r of ranges) {
        const lo = Math.max(p.paddr, r.gpa);
        const hi = Math.min(p.paddr + p.filesz, r.gpa + r.size);
        if (hi <= lo) continue;
        covered += hi - lo;
        const pages = Math.floor((hi - lo) / 4096);
        const n = Math.min(pages, Math.max(64, Math.ceil(((hi - lo) / GiB) * samplesPerGiB)));
        for (let k = 0; k < n; k++) {
          const idx = k % 2 === 0 ? Math.floor((k / n) * pages) : Math.floor(rnd() * pages);
          const gpa = lo + idx * 4096;
          await ef.read(a, 0, 4096, p.offset + (gpa - p.paddr));
          await rf.read(b, 0, 4096, r.fileOffset + (gpa - r.gpa));
          sampled++;
          if (a.some((x) => x !== 0)) nonZero++;
          if (!a.equals(b)) mismatches++;
        }
      }
      coveredBytes += covered;
      if (covered < p.filesz) nonRam.push({ gpa: p.paddr, size: p.filesz - covered });
    }
  } finally {
    await ef.close();
    await rf.close();
  }
  return { sampledPages: sampled, nonZeroSampled: nonZero, mismatches, ramBytesCoveredByElf: coveredBytes, nonRamSegments: nonRam };
}

/**
 * Cross-check makedumpfile's output against the RAM file: every page stored in the kdump file
 * (uncompressed; zero pages share one descriptor) must equal the page at its PFN in ram.img.
 * Minimal kdump-compressed reader: disk_dump_header (block_size @428, sub_hdr_size @432,
 * bitmap_blocks @436), two bitmaps, 24-byte page descriptors in PFN order.
 */
async function checkKdumpAgainstRam(kdumpFile, ramFile, ranges, maxPages = 50_000) {
  const kf = await fsp.open(kdumpFile, 'r');
  const rf = await fsp.open(ramFile, 'r');
  try {
    const h = Buffer.alloc(4096);
    await kf.read(h, 0, 4096, 0);
    if (h.toString('latin1', 0, 8) !== 'KDUMP   ') throw new Error(`${kdumpFile}: not a kdump file`);
    const bs = h.readInt32LE(428);
    const sub = h.readInt32LE(432);
    const bitmapBlocks = h.readUInt32LE(436);
    const bm = Buffer.alloc(bitmapBlocks * bs);
    await kf.read(bm, 0, bm.length, (1 + sub) * bs);
    const dumpable = bm.subarray(bm.length / 2);
    const pfns = [];
    for (let i = 0; i < dumpable.length; i++) {
      const x = dumpable[i];
      if (x) for (let b = 0; b < 8; b++) if (x & (1 << b)) pfns.push(i * 8 + b);
    }
    const descs = Buffer.alloc(pfns.length * 24);
    await kf.read(descs, 0, descs.length, (1 + sub + bitmapBlocks) * bs);
    const step = Math.max(1, Math.floor(pfns.length / maxPages));
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(4096);
    let checked = 0;
    let mismatches = 0;
    let compressed = 0;
    let outsideRam = 0;
    const bad = [];
    for (let k = 0; k < pfns.length; k += step) {
      const gpa = pfns[k] * 4096;
      const r = ranges.find((x) => gpa >= x.gpa && gpa < x.gpa + x.size);
      if (!r) {
        outsideRam++;
        continue;
      }
      const off = Number(descs.readBigInt64LE(k * 24));
      const size = descs.readUInt32LE(k * 24 + 8);
      const flags = descs.readUInt32LE(k * 24 + 12);
      if (flags !== 0 || size !== 4096) {
        compressed++;
        continue;
      }
      await kf.read(a, 0, 4096, off);
      await rf.read(b, 0, 4096, r.fileOffset + (gpa - r.gpa));
      checked++;
      if (!a.equals(b)) {
        mismatches++;
        if (bad.length < 10) bad.push(`0x${pfns[k].toString(16)}`);
      }
    }
    return { dumpedPages: pfns.length, pagesChecked: checked, mismatches, mismatchPfns: bad, skippedCompressed: compressed, outsideRam };
  } finally {
    await kf.close();
    await rf.close();
  }
}

/** RAM-backed lines of the flattened system address space ("info mtree -f"). */
function parseMtree(text) {
  const sys = text.split(/\nFlatView #\d+/).find((v) => /AS "memory"/.test(v)) ?? text;
  const lines = [];
  for (const l of sys.split('\n')) {
    const m = l.match(/^\s*([0-9a-f]+)-([0-9a-f]+) \(prio [-\d]+, (ram|rom|romd)\): (\S+)(?: @([0-9a-f]+))?/);
    if (m) {
      lines.push({
        gpa: parseInt(m[1], 16),
        end: parseInt(m[2], 16) + 1,
        kind: m[3],
        region: m[4],
        offset: m[5] ? parseInt(m[5], 16) : 0,
      });
    }
  }
  return lines;
}

/**
 * @param {{name: string, memMiB: number, cpu?: string, smp?: number, vmcoreinfo?: boolean, load?: string,
 *          out: string, warm?: string, stamp?: boolean, force?: boolean, log?: (s: string) => void}} o
 */
export async function makeImage(o) {
  const log = o.log ?? ((s) => process.stderr.write(`make-image: ${s}\n`));
  const out = path.resolve(o.out);
  const T = {};
  const t = () => performance.now();
  const since = (t0) => Math.round((performance.now() - t0) / 10) / 100;

  if (fs.existsSync(out) && (await fsp.readdir(out)).length > 0) {
    if (!o.force) throw new Error(`${out} exists and is not empty (use --force)`);
    await fsp.rm(out, { recursive: true, force: true });
  }
  await fsp.mkdir(out, { recursive: true, mode: 0o700 });
  await fsp.chmod(out, 0o700);
  const F = (n) => path.join(out, n);

  let t0 = t();
  const build = await buildGuest();
  T.buildGuestSeconds = since(t0);

  const spec = {
    name: o.name,
    memMiB: o.memMiB,
    cpu: o.cpu ?? 'max,la57=off',
    smp: o.smp ?? 2,
    vmcoreinfoDevice: o.vmcoreinfo ?? true,
    load: o.load ?? '',
    warm: o.warm ?? null,
    stamp: !!o.stamp,
  };
  log(`booting ${spec.name}: ${spec.memMiB} MiB, cpu ${spec.cpu}, vmcoreinfo ${spec.vmcoreinfoDevice ? 'on' : 'off'}, load ${spec.load || '-'}`);
  const g = await startGuest({
    name: spec.name,
    dir: out,
    memMiB: spec.memMiB,
    smp: spec.smp,
    cpu: spec.cpu,
    vmcoreinfoDevice: spec.vmcoreinfoDevice,
    load: spec.load,
    warm: o.warm,
    stamp: o.stamp,
    build,
  });
  let ready, crash, dumpRes, registers, mtree, qemuVersion;
  try {
    qemuVersion = g.qmp.greeting?.QMP?.version?.qemu;
    ready = await g.waitReady();
    T.bootToReadySeconds = Math.round(ready.bootSeconds * 100) / 100;
    T.guestUptimeAtReadySeconds = ready.uptime;
    log(`ready after ${T.bootToReadySeconds} s; crashing`);
    crash = await g.crash();
    T.crashToEventSeconds = Math.round(crash.crashToEventSeconds * 1000) / 1000;
    const st = await g.status();
    if (st.status !== 'guest-panicked') throw new Error(`unexpected status after panic: ${st.status}`);
    registers = await g.registers();
    mtree = await g.qmp.hmp('info mtree -f');
    await fsp.writeFile(F('cpu-registers.txt'), registers, { mode: 0o600 });
    await fsp.writeFile(F('mtree.txt'), mtree, { mode: 0o600 });
    dumpRes = await g.dump(F('vmcore.elf'));
    T.dumpGuestMemorySeconds = Math.round(dumpRes.seconds * 100) / 100;
    log(`dump-guest-memory ${T.dumpGuestMemorySeconds} s`);
    t0 = t();
    await g.quit();
    T.quitSeconds = since(t0);
    T.ramCopySeconds = Math.round((await g.takeRam(F('ram.img'))) * 100) / 100;
  } finally {
    await g.dispose();
  }
  await fsp.chmod(F('vmcore.elf'), 0o600); // QEMU creates it 0400
  // QEMU writes every byte; punch holes where blocks are zero (same content, less disk).
  t0 = t();
  await execFileP('fallocate', ['--dig-holes', F('vmcore.elf')]).catch((e) => log(`fallocate --dig-holes: ${e.message}`));
  T.elfDigHolesSeconds = since(t0);

  // --- ELF, layout ----------------------------------------------------------------------------
  const memBytes = spec.memMiB * 1024 * 1024;
  const ramStat = await fsp.stat(F('ram.img'));
  if (ramStat.size !== memBytes) throw new Error(`ram.img is ${ramStat.size} bytes, expected ${memBytes}`);
  const elf = await readElf(F('vmcore.elf'));
  const { layout, ranges } = expectedRanges(memBytes);
  t0 = t();
  const layoutCheck = await checkLayout(F('vmcore.elf'), F('ram.img'), elf, ranges);
  T.layoutCheckSeconds = since(t0);
  if (layoutCheck.mismatches > 0) throw new Error(`layout check failed: ${JSON.stringify(layoutCheck)}`);
  if (layoutCheck.ramBytesCoveredByElf !== memBytes) {
    log(`note: ELF covers ${layoutCheck.ramBytesCoveredByElf} of ${memBytes} RAM bytes`);
  }
  // QEMU's own view: the flattened system address space, RAM-backend pieces merged into ranges.
  const mtreeRam = [];
  for (const m of parseMtree(mtree).filter((x) => x.region === 'ram')) {
    const last = mtreeRam[mtreeRam.length - 1];
    if (last && last.gpa + last.size === m.gpa && last.fileOffset + last.size === m.offset) last.size += m.end - m.gpa;
    else mtreeRam.push({ fileOffset: m.offset, gpa: m.gpa, size: m.end - m.gpa });
  }
  const mtreeMatchesLayout = JSON.stringify(mtreeRam) === JSON.stringify(ranges);
  if (!mtreeMatchesLayout) log(`warning: QEMU mtree RAM map ${JSON.stringify(mtreeRam)} differs from ${JSON.stringify(ranges)}`);

  // --- VMCOREINFO -----------------------------------------------------------------------------
  t0 = t();
  const fromElf = await vmcoreinfoFromElf(F('vmcore.elf'));
  const fromRam = await vmcoreinfoFromRam(F('ram.img'));
  T.vmcoreinfoScanSeconds = since(t0);
  const vmcoreinfo = fromElf ?? fromRam.text;
  if (!vmcoreinfo) throw new Error('no VMCOREINFO in the ELF note nor in RAM');
  await fsp.writeFile(F('vmcoreinfo.txt'), vmcoreinfo, { mode: 0o600 });
  const vi = parseVmcoreinfo(vmcoreinfo);
  const l5 = vi['NUMBER(pgtable_l5_enabled)'];

  // --- makedumpfile ---------------------------------------------------------------------------
  t0 = t();
  const fix = await makeMakedumpfileCompatibleCopy(F('vmcore.elf'), F('vmcore.fixed.elf'), { vmcoreinfo });
  T.elfFixCopySeconds = since(t0);
  const fixedElf = await readElf(F('vmcore.fixed.elf'));
  const fixedCheck = await checkLayout(F('vmcore.fixed.elf'), F('ram.img'), fixedElf, ranges, 1024);
  if (fixedCheck.mismatches > 0) throw new Error(`vmcore.fixed.elf does not match ram.img: ${JSON.stringify(fixedCheck)}`);
  const md = {};
  const mdRun = async (tag, args, target) => {
    const r = await run('makedumpfile', args, {
      stdoutFile: F(`makedumpfile-${tag}.stdout`),
      stderrFile: F(`makedumpfile-${tag}.stderr`),
    });
    if (r.code !== 0) throw new Error(`makedumpfile ${args.join(' ')} failed (${r.code}): ${r.stderr.slice(-500)}`);
    const counts = parseMakedumpfileReport(r.stdout + '\n' + r.stderr);
    const outputBytes = target ? (await fsp.stat(target)).size : null;
    return {
      command: ['makedumpfile', ...args.map((x) => x.replace(out + '/', ''))].join(' '),
      seconds: Math.round(r.seconds * 1000) / 1000,
      outputBytes,
      ...counts,
    };
  };
  for (const level of [31, 16]) {
    const target = level === 31 ? F('md31.kdump') : F('md16.tmp.kdump');
    await fsp.rm(target, { force: true });
    md[`d${level}`] = await mdRun(`d${level}`, ['-d', String(level), '--message-level', '31', F('vmcore.fixed.elf'), target], target);
    if (level !== 31) await fsp.rm(target, { force: true });
    T[`makedumpfileD${level}Seconds`] = md[`d${level}`].seconds;
  }
  if (!fromElf) {
    // Cross-check: the documented way for a dump without the note, -i VMCOREINFO on the
    // headers-only fix (no injected note) — the counts must be identical.
    await makeMakedumpfileCompatibleCopy(F('vmcore.elf'), F('vmcore.noinject.tmp.elf'));
    md.d31WithI = await mdRun('d31-i', ['-d', '31', '--message-level', '31', '--dry-run', '-i', F('vmcoreinfo.txt'), F('vmcore.noinject.tmp.elf'), F('md31-i.tmp.kdump')]);
    await fsp.rm(F('vmcore.noinject.tmp.elf'), { force: true });
    const keys = ['excludedPages', 'zeroPages', 'nonPrivateCachePages', 'privateCachePages', 'userPages', 'freePages', 'remainingPages', 'totalPages'];
    md.d31WithIMatches = keys.every((k) => md.d31WithI[k] === md.d31[k]);
    if (!md.d31WithIMatches) log('warning: makedumpfile -i vmcoreinfo.txt counts differ from the injected-note run');
  }
  t0 = t();
  md.d31ContentCheck = await checkKdumpAgainstRam(F('md31.kdump'), F('ram.img'), ranges);
  T.kdumpContentCheckSeconds = since(t0);
  if (md.d31ContentCheck.mismatches > 0) throw new Error(`md31.kdump pages differ from ram.img: ${JSON.stringify(md.d31ContentCheck)}`);
  const dm = await run('makedumpfile', ['--dump-dmesg', F('md31.kdump'), F('dmesg.txt')], {
    stdoutFile: F('makedumpfile-dmesg.stdout'),
    stderrFile: F('makedumpfile-dmesg.stderr'),
  });
  T.dumpDmesgSeconds = Math.round(dm.seconds * 1000) / 1000;
  const dmesg = await fsp.readFile(F('dmesg.txt'), 'utf8').catch(() => '');
  md.dmesgHasPanicLine = dmesg.includes(PANIC_LINE);
  md.version = (await run('makedumpfile', ['-v'])).stdout.split('\n')[0].trim();
  md.quirks = [
    'makedumpfile 1.7.2 ignores e_phoff: it reads program headers right after the ELF header, so it runs on vmcore.fixed.elf',
    ...(fromElf
      ? []
      : [
          'the QEMU ELF has no VMCOREINFO note (no -device vmcoreinfo): vmcore.fixed.elf carries an injected VMCOREINFO note (from the RAM scan); ' +
            '-i vmcoreinfo.txt gives the same counts (d31WithI) but its kdump output has no VMCOREINFO, so --dump-dmesg on it fails',
        ]),
  ];
  await fsp.writeFile(F('makedumpfile.json'), JSON.stringify(md, null, 2) + '\n', { mode: 0o600 });

  // --- meta -----------------------------------------------------------------------------------
  const du = await execFileP('du', ['-B1', F('ram.img')]).then((r) => Number(r.stdout.split('\t')[0])).catch(() => null);
  const meta = {
    format: 'vicover-crashed-guest/1',
    name: spec.name,
    createdAt: new Date().toISOString(),
    spec,
    kernel: { version: build.kernelVersion, package: build.kernelPackage, packageVersion: build.kernelPackageVersion, osrelease: vi.OSRELEASE, buildId: vi['BUILD-ID'] },
    qemu: { version: qemuVersion ? `${qemuVersion.major}.${qemuVersion.minor}.${qemuVersion.micro}` : null, args: g.qemuArgs },
    ram: {
      file: 'ram.img',
      size: memBytes,
      allocatedBytes: du,
      layout,
      ranges,
      qemuMtreeRam: mtreeRam,
      mtreeMatchesLayout,
      nonRamElfSegments: layoutCheck.nonRamSegments,
    },
    pagingLevels: l5 === '1' ? 5 : 4,
    vmcoreinfo: {
      device: spec.vmcoreinfoDevice,
      elfHasNote: !!fromElf,
      source: fromElf ? 'elf-note' : 'ram-scan',
      ramScanCopies: fromRam.copies,
      ramScanDistinct: fromRam.distinct,
      ramScanMatchesElfNote: fromElf ? fromElf === fromRam.text : null,
      phys_base: vi['NUMBER(phys_base)'],
      kerneloffset: vi.KERNELOFFSET,
    },
    elf: {
      file: 'vmcore.elf',
      size: (await fsp.stat(F('vmcore.elf'))).size,
      e_phoff: elf.header.phoff,
      e_ehsize: elf.header.ehsize,
      e_shnum: elf.header.shnum,
      loads: elf.loads.map((p) => ({ offset: p.offset, paddr: p.paddr, size: p.filesz })),
      notes: elf.notes.map((n) => ({ name: n.name, type: n.type, size: n.desc.length })),
      fixedCopy: 'vmcore.fixed.elf',
      fixedCopyPatched: fix.patched,
      fixedCopyInjectedVmcoreinfo: fix.injectedVmcoreinfo,
    },
    layoutCheck,
    guest: { ready, meminfoKiB: g.meminfo, cmdline: g.append() },
    panic: { event: crash.event.data, dmesgHasPanicLine: md.dmesgHasPanicLine },
    makedumpfile: md,
    timings: T,
  };
  for (const f of await fsp.readdir(out)) await fsp.chmod(F(f), 0o600);
  await fsp.writeFile(F('meta.json.tmp'), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
  await fsp.rename(F('meta.json.tmp'), F('meta.json'));
  log(`done: ${out}`);
  return { dir: out, meta };
}

async function main() {
  const { values } = parseArgs({
    options: {
      name: { type: 'string' },
      mem: { type: 'string', default: '768' },
      cpu: { type: 'string', default: 'max,la57=off' },
      smp: { type: 'string', default: '2' },
      vmcoreinfo: { type: 'string', default: 'on' },
      load: { type: 'string', default: '' },
      warm: { type: 'string' },
      stamp: { type: 'boolean', default: false },
      out: { type: 'string' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.out) {
    console.error(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 20).join('\n'));
    process.exit(values.help ? 0 : 2);
  }
  if (!['on', 'off'].includes(values.vmcoreinfo)) throw new Error('--vmcoreinfo must be on or off');
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130)); // 'exit' hook kills QEMU
  const { meta } = await makeImage({
    name: values.name ?? path.basename(values.out),
    memMiB: Number(values.mem),
    cpu: values.cpu,
    smp: Number(values.smp),
    vmcoreinfo: values.vmcoreinfo === 'on',
    load: values.load,
    warm: values.warm,
    stamp: values.stamp,
    out: values.out,
    force: values.force,
  });
  const d = meta.makedumpfile.d31;
  console.log(JSON.stringify({ dir: path.resolve(values.out), timings: meta.timings, d31: d }, null, 2));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`make-image: ${e.message}`);
    process.exit(1);
  });
}
