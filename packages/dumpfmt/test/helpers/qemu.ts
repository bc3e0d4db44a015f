/**
 * Produce real QEMU dump-guest-memory files (elf, kdump-zlib = flattened) of a small guest that never
 * ran (-S), with known content loaded into its RAM at BLOB_ADDR by QEMU's generic loader device: an
 * independent writer to test our readers against, with deterministic pages.
 */
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const QEMU = '/usr/bin/qemu-system-x86_64';
export const hasQemu = existsSync(QEMU) && spawnSync(QEMU, ['--version']).status === 0;

async function qmp(sock: string, cmds: { execute: string; arguments?: object }[]): Promise<unknown[]> {
  const s = connect(sock);
  const lines: string[] = [];
  let buf = '';
  const waiters: ((l: string) => void)[] = [];
  s.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  const next = () => new Promise<string>((res) => (lines.length ? res(lines.shift()!) : waiters.push(res)));
  await new Promise<void>((res, rej) => s.once('connect', res).once('error', rej));
  await next(); // greeting
  const out: unknown[] = [];
  for (const c of [{ execute: 'qmp_capabilities' }, ...cmds]) {
    s.write(JSON.stringify(c) + '\n');
    for (;;) {
      const r = JSON.parse(await next()) as { return?: unknown; error?: unknown; event?: string };
      if (r.event) continue;
      out.push(r);
      break;
    }
  }
  s.end();
  return out;
}

export const BLOB_ADDR = 0x200000;

export async function qemuDumps(dir: string, blob: Buffer, formats = ['elf', 'kdump-zlib']): Promise<Record<string, string>> {
  const sock = join(dir, 'qmp.sock');
  const blobFile = join(dir, 'blob.bin');
  writeFileSync(blobFile, blob);
  const p = spawn(
    QEMU,
    ['-accel', 'tcg', '-m', '32M', '-S', '-display', 'none', '-nodefaults', '-no-user-config', '-device', `loader,file=${blobFile},addr=${BLOB_ADDR},force-raw=on`, '-qmp', `unix:${sock},server=on,wait=off`],
    { stdio: 'ignore' },
  );
  try {
    for (let i = 0; i < 200 && !existsSync(sock); i++) await sleep(50);
    const files: Record<string, string> = {};
    const cmds: { execute: string; arguments?: object }[] = [];
    for (const f of formats) {
      files[f] = join(dir, `qemu.${f}`);
      cmds.push({ execute: 'dump-guest-memory', arguments: { paging: false, protocol: `file:${files[f]}`, format: f } });
    }
    const res = await qmp(sock, [...cmds, { execute: 'quit' }]);
    for (const r of res) if ((r as { error?: unknown }).error) throw new Error(`QMP: ${JSON.stringify(r)}`);
    return files;
  } finally {
    await new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)));
  }
}
