/**
 * The `qemu` plugin: registers the QEMU/KVM backend for the VMs named in its options.
 *
 * ```yaml
 * plugins:
 *   - [qemu, { stateDir: /var/lib/vicover/qemu,
 *              vms: [{ name: web1, qmp: /run/qemu/web1.qmp, ramFile: /dev/shm/web1.ram, memoryMiB: 2048,
 *                      pidfile: /run/qemu/web1.pid }] }]
 * ```
 * See docs/qemu.md.
 */
import type { Vicover, VicoverPlugin } from '@vicover/core';
import { QemuBackend } from './backend.js';
import { optionsSchema, type QemuOptions } from './options.js';

export const PLUGIN_NAME = 'qemu';

const plugin: VicoverPlugin<QemuOptions> = {
  name: PLUGIN_NAME,
  coreVersion: '^0.1.0',
  description: 'QEMU/KVM backend: QMP crash detection, RAM-file memory, punch-hole release, virtio-mem recovery VMs',
  optionsSchema,
  apply(core: Vicover, options: QemuOptions) {
    core.registerBackend(new QemuBackend(options, core.logger(PLUGIN_NAME)));
  },
};

export default plugin;
