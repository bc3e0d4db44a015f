/**
 * The nested Xen test environment, seen from the host: boots Xen 4.17 + dom0 under QEMU/TCG
 * (the images test/xen/build.sh made), shares a run directory (/share, read-write) and the work tree
 * (/project, read-only) with dom0 over 9p, and runs jobs in dom0 through /share/jobs (see
 * dom0-init.sh). One environment at a time: the machine is shared.
 *
 *   const env = await startXenEnv({ build, runDir });
 *   const r = await env.run('xl list');           // { rc, out, seconds }
 *   const job = env.spawn('node /project/test/xen/scenario.mjs …');  await job.wait();
 *   await env.stop();                              // poweroff dom0, QEMU exits; overlay removed
 *
 * Plain ESM JavaScript, Node built-ins only (like test/guest).
 */
import { spawn, execFileSync } from 'node:child_process';
import { promises as fsp, existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CACHE = process.env.VICOVER_CACHE || path.join(process.env.HOME || '/root', '.cache/vicover');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Run build.sh (cached) and return its manifest. */
export function buildXenEnv({ force = false, log = () => {} } = {}) {
  const args = [path.join(ROOT, 'test/xen/build.sh'), ...(force ? ['--force'] : [])];
  log(`building the Xen environment (cached after the first time): ${args.join(' ')}`);
  const out = execFileSync('bash', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 << 20 });
  const dir = out.trim().split('\n').pop();
  return JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
}

/**
 * Xen's command line. smap=0: without it dom0 dies on its first exception under TCG. dom0 gets a fixed
 * 1 GiB (no ballooning: xl.conf autoballoon=off), the rest is for domUs.
 */
export function xenCmdline({ dom0MiB = 1024 } = {}) {
  return `console=com1 com1=115200,8n1 dom0_mem=${dom0MiB}M,max:${dom0MiB}M dom0_max_vcpus=2 smap=0 noreboot loglvl=all guest_loglvl=all`;
}

/**
 * The parts of the work tree the daemon needs in dom0 (built dist/, package.json files, the native
 * helper, production node_modules, test/xen) as one tar in the share: dom0 unpacks it onto its own disk
 * at boot (/opt/vicover). Node resolving hundreds of modules over 9p under nested TCG took ~2 minutes
 * per start; one sequential tar read takes seconds.
 */
export function bundleProject(dest) {
  const prod = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20 })
    .split('\n')
    .map((l) => path.relative(ROOT, l.trim()))
    .filter((l) => l.startsWith('node_modules/') || l.includes('/node_modules/'));
  const ws = [];
  for (const top of ['packages', 'plugins']) {
    for (const d of readdirSync(path.join(ROOT, top))) {
      for (const f of ['package.json', 'dist', 'bin', 'native/build', 'native/helper.c', 'native/Makefile']) {
        if (existsSync(path.join(ROOT, top, d, f))) ws.push(path.join(top, d, f));
      }
    }
  }
  const list = ['package.json', ...ws, ...new Set(prod), 'test/xen'];
  execFileSync('tar', ['-C', ROOT, '--exclude=*.tsbuildinfo', '--exclude=*.map', '-cf', dest, ...list], { stdio: ['ignore', 'ignore', 'inherit'] });
}

export async function startXenEnv({ build, runDir, memMiB = 2560, smp = 2, cpu = 'qemu64,+svm,+npt', dom0MiB = 1024, bootTimeoutMs = 300_000, log = () => {} }) {
  const share = path.join(runDir, 'share');
  await fsp.mkdir(path.join(share, 'jobs'), { recursive: true });
  await fsp.mkdir(path.join(share, 'results'), { recursive: true });
  // The domU pieces: dom0 reads them from /share/domu (hard links into the cache where possible).
  const domu = path.join(share, 'domu');
  await fsp.mkdir(domu, { recursive: true });
  for (const [src, name] of [[build.vmlinuz, 'vmlinuz'], [path.join(build.domuDir, 'domu-initrd.gz'), 'domu-initrd.gz'], [path.join(build.domuDir, 'domu-disk.img'), 'domu-disk.img']]) {
    const dst = path.join(domu, name);
    await fsp.rm(dst, { force: true });
    await fsp.link(src, dst).catch(() => fsp.copyFile(src, dst));
  }
  bundleProject(path.join(share, 'project.tar'));
  const overlay = path.join(runDir, 'dom0-overlay.qcow2');
  const serial = path.join(runDir, 'serial.log');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', build.dom0Image, '-F', 'raw', overlay]);
  const args = [
    '-accel', 'tcg,thread=multi',
    '-machine', 'pc',
    '-cpu', cpu,
    '-smp', String(smp),
    '-m', String(memMiB),
    '-kernel', build.xen,
    '-append', xenCmdline({ dom0MiB }),
    // Multiboot modules: the dom0 kernel with its command line, then its initramfs.
    '-initrd', `${build.vmlinuz} console=hvc0 earlyprintk=xen,${build.dom0Initrd}`,
    '-drive', `file=${overlay},format=qcow2,if=virtio`,
    '-virtfs', `local,path=${share},mount_tag=share,security_model=none,id=share`,
    '-virtfs', `local,path=${ROOT},mount_tag=project,security_model=none,readonly=on,id=project`,
    '-serial', `file:${serial}`,
    '-display', 'none', '-nodefaults', '-no-user-config', '-no-reboot',
  ];
  const t0 = Date.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let qemuErr = '';
  qemu.stderr.on('data', (d) => (qemuErr = (qemuErr + d).slice(-4000)));
  let exited = null;
  qemu.on('exit', (code, signal) => (exited = { code, signal }));
  log(`qemu pid ${qemu.pid}: Xen + dom0 booting (serial log ${serial})`);

  const ready = path.join(share, 'dom0-ready');
  const deadline = Date.now() + bootTimeoutMs;
  while (!existsSync(ready)) {
    if (exited) throw new Error(`nested QEMU exited during boot (${JSON.stringify(exited)}): ${qemuErr.trim()}\n${tail(serial)}`);
    if (Date.now() > deadline) {
      qemu.kill('SIGKILL');
      throw new Error(`dom0 not ready after ${bootTimeoutMs / 1000} s\n${tail(serial)}`);
    }
    await sleep(500);
  }
  const bootSeconds = (Date.now() - t0) / 1000;
  log(`dom0 ready after ${bootSeconds.toFixed(1)} s`);
  let seq = 0;

  const env = {
    runDir,
    share,
    serial,
    bootSeconds,
    pid: qemu.pid,
    /** Start a job; returns { id, wait(timeoutMs) → { rc, out, seconds }, output() }. */
    spawn(script, { name = 'job' } = {}) {
      const id = `${String(++seq).padStart(3, '0')}-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
      const base = path.join(share, 'jobs', id);
      const started = Date.now();
      const written = fsp.writeFile(`${base}.tmp`, `set -o pipefail\n${script}\n`).then(() => fsp.rename(`${base}.tmp`, `${base}.sh`));
      return {
        id,
        output: () => fsp.readFile(`${base}.out`, 'utf8').catch(() => ''),
        async wait(timeoutMs = 600_000) {
          await written;
          const end = Date.now() + timeoutMs;
          for (;;) {
            const rc = await fsp.readFile(`${base}.rc`, 'utf8').catch(() => null);
            if (rc !== null) {
              const out = await fsp.readFile(`${base}.out`, 'utf8').catch(() => '');
              return { rc: Number(rc.trim()), out, seconds: (Date.now() - started) / 1000 };
            }
            if (exited) throw new Error(`nested QEMU exited while job ${id} ran (${JSON.stringify(exited)})\n${tail(serial)}`);
            if (Date.now() > end) throw new Error(`job ${id} did not finish within ${timeoutMs / 1000} s: ${(await this.output()).slice(-2000)}`);
            await sleep(250);
          }
        },
      };
    },
    /** Run a job and wait for it. */
    async run(script, { name = 'job', timeoutMs = 600_000, check = true } = {}) {
      const r = await env.spawn(script, { name }).wait(timeoutMs);
      if (check && r.rc !== 0) throw new Error(`dom0 job "${name}" failed (rc ${r.rc}):\n${r.out.slice(-4000)}`);
      return r;
    },
    alive: () => !exited,
    async stop({ keep = false } = {}) {
      if (!exited) {
        await fsp.writeFile(path.join(share, 'jobs', 'STOP'), '').catch(() => {});
        const end = Date.now() + 60_000;
        while (!exited && Date.now() < end) await sleep(250);
        if (!exited) {
          qemu.kill('SIGKILL');
          await sleep(500);
        }
      }
      await fsp.rm(overlay, { force: true });
      await fsp.rm(path.join(share, 'jobs'), { recursive: true, force: true });
      if (!keep) await fsp.rm(runDir, { recursive: true, force: true });
    },
  };
  return env;
}

export function tail(file, lines = 40) {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
