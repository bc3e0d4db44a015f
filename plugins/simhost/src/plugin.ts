/**
 * The `simhost` plugin: registers the simulated host backend — the default backend when a
 * configuration names none (the CLI adds it). Everything it produces is labelled SIMULATED.
 *
 * ```yaml
 * plugins:
 *   - [simhost, { vms: [{ name: sim1, memoryMiB: 16384, freePercent: 50, crashAfterSeconds: 5 }] }]
 * ```
 * See docs/simhost.md.
 */
import type { Vicover, VicoverPlugin } from '@vicover/core';
import { SimhostBackend } from './backend.js';
import { defaultCacheDir, optionsSchema, type SimhostOptions } from './options.js';

export const PLUGIN_NAME = 'simhost';

const plugin: VicoverPlugin<Partial<SimhostOptions>> = {
  name: PLUGIN_NAME,
  coreVersion: '^0.1.0',
  description: 'SIMULATED host: generated Linux guest images, a modelled disk, modelled recovery-VM boots',
  optionsSchema,
  apply(core: Vicover, options: Partial<SimhostOptions>) {
    core.registerBackend(new SimhostBackend(resolveOptions(options, core.config.io.bandwidthMiBps), core.logger(PLUGIN_NAME, { simulated: true })));
  },
};

/** Options with every default (the loader applies the schema's; code that builds a backend directly gets them here). */
export function resolveOptions(o: Partial<SimhostOptions>, coreBandwidthMiBps?: number): ConstructorParameters<typeof SimhostBackend>[0] {
  const r = o.recovery ?? ({} as Partial<SimhostOptions['recovery']>);
  return {
    vms: (o.vms ?? [{ name: 'sim1', memoryMiB: 4096 } as SimhostOptions['vms'][number]]).map((v) => ({ ...v, freePercent: v.freePercent ?? 50, levels: v.levels ?? 4, content: v.content ?? 'auto', cpus: v.cpus ?? 2 })),
    cacheDir: o.cacheDir ?? defaultCacheDir(),
    disk: { ...(o.disk ?? {}) },
    recovery: {
      bootSeconds: r.bootSeconds ?? optionsSchema.properties.recovery.properties.bootSeconds.default,
      readMiB: r.readMiB ?? optionsSchema.properties.recovery.properties.readMiB.default,
      writeMiB: r.writeMiB ?? optionsSchema.properties.recovery.properties.writeMiB.default,
      touchedMiB: r.touchedMiB ?? optionsSchema.properties.recovery.properties.touchedMiB.default,
      steps: r.steps ?? optionsSchema.properties.recovery.properties.steps.default,
      http: r.http ?? true,
    },
    dump: { sink: o.dump?.sink ?? 'auto', maxFileGiB: o.dump?.maxFileGiB ?? 1 },
    growGranularityMiB: o.growGranularityMiB ?? 2,
    vmcoreinfoNote: o.vmcoreinfoNote ?? true,
    ...(o.commandSocket ? { commandSocket: o.commandSocket } : {}),
    ...(coreBandwidthMiBps !== undefined ? { coreBandwidthMiBps } : {}),
  };
}

export default plugin;
