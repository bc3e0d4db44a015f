import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The core is hypervisor- and guest-OS-neutral: backends and the guest introspection are plugins.
const SRC = fileURLToPath(new URL('../src/', import.meta.url));
const WORDS = /\b(qemu|kvm|xen|xl|libvirt|linux|vmcoreinfo)\b/i;

describe('@vicover/core is neutral', () => {
  it('names no hypervisor and no guest OS in its sources', () => {
    const hits: string[] = [];
    for (const f of readdirSync(SRC).filter((n) => n.endsWith('.ts'))) {
      readFileSync(path.join(SRC, f), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (WORDS.test(line)) hits.push(`${f}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(hits).toEqual([]);
  });

  it('depends on no plugin package', () => {
    const pkg = JSON.parse(readFileSync(path.join(SRC, '../package.json'), 'utf8'));
    const deps = Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies });
    expect(deps.filter((d) => d.startsWith('@vicover/plugin-'))).toEqual([]);
  });
});
