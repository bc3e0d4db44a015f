/**
 * The `xen` plugin: registers the Xen backend for the domains named in its options. Runs in dom0.
 *
 * ```yaml
 * plugins:
 *   - [xen, { domains: [{ name: web1 }] }]     # web1's xl.cfg has on_crash = "preserve"
 * ```
 * See docs/xen.md.
 */
import type { Vicover, VicoverPlugin } from '@vicover/core';
import { XenBackend } from './backend.js';
import { optionsSchema, type XenOptions } from './options.js';

export const PLUGIN_NAME = 'xen';

const plugin: VicoverPlugin<XenOptions> = {
  name: PLUGIN_NAME,
  coreVersion: '^0.1.0',
  description: 'Xen backend: xl/xenstore crash detection, native foreign-memory helper, decrease_reservation release, xl mem-set recovery domains',
  optionsSchema,
  apply(core: Vicover, options: XenOptions) {
    core.registerBackend(new XenBackend(options, core.logger(PLUGIN_NAME)));
  },
};

export default plugin;
