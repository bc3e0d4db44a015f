/**
 * The `crash` utility opens Vicover's dumps of the real guests (test/crash/run.sh). It needs the guest
 * kernel's debug vmlinux (an ~860 MB download on first use), so it runs only with VICOVER_CRASH_TEST=1:
 *
 *   npm run build && VICOVER_CRASH_TEST=1 npx vitest run test/crash
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const enabled = process.env.VICOVER_CRASH_TEST === '1';

describe.skipIf(!enabled)('crash opens our dumps (VICOVER_CRASH_TEST=1)', () => {
  it('test/crash/run.sh passes for small4 and mixed5, kdump raw and zlib and ELF, at -d 31', () => {
    const summary = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vcv-crash-test-')), 'summary.jsonl');
    const r = spawnSync('bash', [path.join(here, 'run.sh'), 'small4', 'mixed5'], {
      encoding: 'utf8',
      env: { ...process.env, VICOVER_CRASH_SUMMARY: summary },
      maxBuffer: 1 << 26,
    });
    console.log(r.stdout);
    expect(r.status, `${r.stdout}\n${r.stderr.slice(-4000)}`).toBe(0);
    const rows = fs
      .readFileSync(summary, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((x) => `${x.image}/${x.format}`).sort()).toEqual(['mixed5/elf', 'mixed5/raw', 'mixed5/zlib', 'small4/elf', 'small4/raw', 'small4/zlib']);
    for (const x of rows) {
      expect(x, `${x.image}/${x.format}`).toMatchObject({ pass: true, sys: 'ok', bt: 'ok', log: 'ok', ps: 'ok', kmem: 'ok', clean: 'ok', crashExit: 0 });
      expect(x.tasks).toMatch(/^ok\(\d+\)$/);
      if (x.format !== 'elf') expect(x.same).toBe('ok');
    }
    fs.rmSync(path.dirname(summary), { recursive: true, force: true });
  }, 60 * 60_000);
});
