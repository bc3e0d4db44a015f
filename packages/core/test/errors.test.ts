import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { codes, VcvError, wrapError } from '@vicover/errors';

const doc = readFileSync(fileURLToPath(new URL('../../../docs/errors.md', import.meta.url)), 'utf8');
const documented = new Set([...doc.matchAll(/^### (VCV_ERR_[A-Z0-9_]+)\s*$/gm)].map((m) => m[1]));

describe('error catalogue', () => {
  it('documents every code in docs/errors.md', () => {
    const missing = Object.keys(codes).filter((c) => !documented.has(c));
    expect(missing, `undocumented codes: ${missing.join(', ')}`).toEqual([]);
  });

  it('documents no code that does not exist', () => {
    const stale = [...documented].filter((c) => !(c in codes));
    expect(stale, `documented but not in the catalogue: ${stale.join(', ')}`).toEqual([]);
  });

  it('gives every code an exit status and a one-line summary', () => {
    for (const [code, info] of Object.entries(codes)) {
      expect(code).toMatch(/^VCV_ERR_[A-Z0-9_]+$/);
      expect(info.exit).toBeGreaterThan(0);
      expect(info.summary).not.toContain('\n');
    }
  });

  it('maps system errors to codes', () => {
    const enospc = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    expect(wrapError(enospc, 'VCV_ERR_IO', 'writing x').code).toBe('VCV_ERR_NO_SPACE');
    const eexist = Object.assign(new Error('exists'), { code: 'EEXIST' });
    expect(wrapError(eexist, 'VCV_ERR_OUTPUT_CREATE', 'creating x').code).toBe('VCV_ERR_OUTPUT_EXISTS');
    expect(() => new VcvError('VCV_ERR_NOPE' as never, 'x')).toThrow(/unknown Vicover error code/);
  });
});
