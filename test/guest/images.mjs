// Cached crashed-guest image sets for tests and benchmarks (see docs/guests.md).
//
//   import { ensureImage, SPECS } from '../../test/guest/images.mjs';
//   const dir = await ensureImage('small4');      // builds once (~35 s), then reuses
//   // dir/meta.json, dir/ram.img, dir/vmcore.elf, dir/makedumpfile.json, …
//
// Cache: ${VICOVER_CACHE:-~/.cache/vicover}/images/<name>-<hash>/, where <hash> covers the spec,
// the guest build key (kernel, init, memhog, build.sh) and IMAGE_FORMAT. Safe to call from
// several processes at once (a lock directory serialises builders of the same image).

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { buildGuest, cacheRoot } from './guest.mjs';
import { makeImage } from './make-image.mjs';

/** Bump when the contents or layout of an image set change. */
export const IMAGE_FORMAT = 2;

/**
 * @typedef {object} ImageSpec
 * @property {string} name
 * @property {number} memMiB
 * @property {string} cpu          'max,la57=off' (4-level paging) or 'max' (5-level under TCG)
 * @property {boolean} vmcoreinfo  -device vmcoreinfo
 * @property {string} load         vicover.load
 * @property {number} [smp]
 * @property {string} [purpose]
 */

/** Standard specs. CI uses small4 and mixed5; big4, big5 and big12 are for local runs and benchmarks. */
export const SPECS = Object.freeze({
  /** @type {ImageSpec} */
  small4: Object.freeze({
    name: 'small4',
    memMiB: 768,
    cpu: 'max,la57=off',
    vmcoreinfo: true,
    load: 'cache:64,meta:500,write:8,tmpfs:32,anon:96',
    purpose: 'CI: 4-level paging, VMCOREINFO note in the ELF, light load',
  }),
  /** @type {ImageSpec} */
  mixed5: Object.freeze({
    name: 'mixed5',
    memMiB: 1024,
    cpu: 'max',
    vmcoreinfo: false,
    load: 'cache:200,meta:2000,write:16,tmpfs:100,anon:300',
    purpose: 'CI: 5-level paging, no vmcoreinfo device (VMCOREINFO only in RAM), realistic mix',
  }),
  /** @type {ImageSpec} */
  big4: Object.freeze({
    name: 'big4',
    memMiB: 4608,
    cpu: 'max,la57=off',
    vmcoreinfo: true,
    load: 'cache:1000,meta:2000,write:64,tmpfs:500,anon:1500',
    purpose: 'local/benchmarks: 4.5 GiB, pc layout with the PCI hole (file [3G,…) → GPA [4G,…))',
  }),
  /** @type {ImageSpec} */
  big5: Object.freeze({
    name: 'big5',
    memMiB: 4096,
    cpu: 'max',
    vmcoreinfo: false,
    load: 'cache:800,meta:2000,write:32,tmpfs:400,anon:1200',
    purpose: 'local/benchmarks: 4 GiB, 5-level, no vmcoreinfo device, pc layout',
  }),
  /** @type {ImageSpec} */
  big12: Object.freeze({
    name: 'big12',
    memMiB: 12288,
    cpu: 'max,la57=off',
    vmcoreinfo: true,
    load: 'cache:3000,meta:4000,write:64,tmpfs:1000,anon:3500',
    purpose: 'local/benchmarks: 12 GiB, where the fixed costs of a Node process weigh less (bench:dump --images big12; ~20 GB of disk)',
  }),
});

/** @param {ImageSpec} spec @param {string} buildKey */
export function specHash(spec, buildKey) {
  const canon = JSON.stringify({
    f: IMAGE_FORMAT,
    b: buildKey,
    m: spec.memMiB,
    c: spec.cpu,
    v: !!spec.vmcoreinfo,
    l: spec.load,
    s: spec.smp ?? 2,
  });
  return createHash('sha256').update(canon).digest('hex').slice(0, 12);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/**
 * Return the directory of a complete image set for `spec` (a standard name or an ImageSpec),
 * building it if missing.
 * @param {string|ImageSpec} specOrName
 * @param {{force?: boolean, timeoutMs?: number, log?: (s: string) => void}} [opts]
 * @returns {Promise<string>}
 */
export async function ensureImage(specOrName, opts = {}) {
  const spec = typeof specOrName === 'string' ? SPECS[specOrName] : specOrName;
  if (!spec) throw new Error(`unknown image spec '${specOrName}' (known: ${Object.keys(SPECS).join(', ')})`);
  const log = opts.log ?? ((s) => process.stderr.write(`images: ${s}\n`));
  const build = await buildGuest();
  const root = path.join(cacheRoot(), 'images');
  await fsp.mkdir(root, { recursive: true, mode: 0o700 });
  const dir = path.join(root, `${spec.name}-${specHash(spec, build.key)}`);
  const lock = `${dir}.lock`;
  const deadline = Date.now() + (opts.timeoutMs ?? 30 * 60_000);

  for (;;) {
    if (!opts.force && fs.existsSync(path.join(dir, 'meta.json'))) return dir;
    try {
      await fsp.mkdir(lock);
      await fsp.writeFile(path.join(lock, 'pid'), String(process.pid));
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const pid = Number(await fsp.readFile(path.join(lock, 'pid'), 'utf8').catch(() => '0'));
      if (pid && !pidAlive(pid)) {
        log(`removing stale lock ${lock} (pid ${pid})`);
        await fsp.rm(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${lock}`);
      await sleep(1000);
      continue;
    }
    try {
      if (!opts.force && fs.existsSync(path.join(dir, 'meta.json'))) return dir;
      const tmp = `${dir}.tmp-${process.pid}`;
      await fsp.rm(tmp, { recursive: true, force: true });
      log(`building ${spec.name} in ${dir}`);
      try {
        await makeImage({
          name: spec.name,
          memMiB: spec.memMiB,
          cpu: spec.cpu,
          smp: spec.smp,
          vmcoreinfo: spec.vmcoreinfo,
          load: spec.load,
          out: tmp,
          log: (s) => log(`${spec.name}: ${s}`),
        });
      } catch (e) {
        await fsp.rm(tmp, { recursive: true, force: true });
        throw e;
      }
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.rename(tmp, dir);
      return dir;
    } finally {
      await fsp.rm(lock, { recursive: true, force: true });
    }
  }
}

/** Read an image set's meta.json. @param {string} dir */
export async function readMeta(dir) {
  return JSON.parse(await fsp.readFile(path.join(dir, 'meta.json'), 'utf8'));
}

// CLI: node test/guest/images.mjs [NAME…]  — ensure the named standard images, print their dirs.
if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const names = process.argv.slice(2).length ? process.argv.slice(2) : ['small4', 'mixed5'];
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
  for (const n of names) console.log(`${n}\t${await ensureImage(n)}`);
}
