/**
 * A crashed domain's configuration, as `xl list -l` gives it (libxl_domain_config in JSON), turned
 * back into an xl.cfg the recovery domain is created from — `xl create` reads xl.cfg text only (JSON
 * only inside save files). What is carried: type, vCPUs, memory/maxmem, tsc_mode, kernel/ramdisk/
 * cmdline (PV bootloader too), disks, vifs, lifecycle actions. Anything else the JSON holds is listed in
 * `unmapped` (and logged): give the plugin the domain's own config file instead (`configFile`) when
 * the recovery domain needs it (HVM guests, PCI passthrough, vfb, …).
 */

import { editKernelCmdline, type KernelCmdlineEdits } from '@vicover/hostutil';


export interface XlConfig {
  /** xl.cfg lines. */
  readonly lines: readonly string[];
  readonly type: 'pv' | 'pvh' | 'hvm' | string;
  readonly name: string;
  readonly maxMemKiB: number;
  readonly targetMemKiB: number;
  readonly disks: readonly { readonly target: string; readonly vdev: string; readonly backend?: string }[];
  /** JSON keys this converter does not carry over. */
  readonly unmapped: readonly string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** An xl.cfg string literal. */
export function q(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}


const ACTIONS = new Set(['on_poweroff', 'on_reboot', 'on_watchdog', 'on_crash', 'on_soft_reset']);
const C_INFO_KNOWN = new Set(['type', 'name', 'domid', 'uuid', 'run_hotplug_scripts', 'ssidref', 'ssid_label', 'pool_id', 'pool_name', 'xend_suspend_evtchn_compat', 'passthrough']);
const B_INFO_KNOWN = new Set([
  'max_vcpus', 'avail_vcpus', 'tsc_mode', 'max_memkb', 'target_memkb', 'video_memkb', 'shadow_memkb', 'sched_params', 'claim_mode',
  'kernel', 'cmdline', 'ramdisk', 'type.pv', 'type.pvh', 'arch_arm', 'arch_x86', 'event_channels', 'iomem', 'device_model_version',
  'localtime', 'rtc_timeoffset', 'disable_migrate', 'cpuid', 'nodemap', 'cpumap', 'vcpu_hard_affinity', 'vcpu_soft_affinity', 'numa_placement',
  'outstanding_memkb', 'exec_ssidref', 'exec_ssid_label', 'max_grant_frames', 'max_maptrack_frames', 'max_grant_version', 'device_tree',
  'acpi', 'bootloader', 'bootloader_args', 'vuart', 'altp2m', 'nested_hvm', 'apic', 'dm_restrict', 'tee', 'vmtrace_buf_kb', 'vpmu', 'stubdomain_memkb',
]);
const TOP_KNOWN = new Set(['c_info', 'b_info', 'disks', 'nics', ...ACTIONS]);

function isEmpty(v: unknown): boolean {
  return v === undefined || v === null || (Array.isArray(v) && v.length === 0) || (isObj(v) && Object.keys(v).length === 0);
}

function diskSpec(d: Obj): string | null {
  const target = str(d.pdev_path);
  const vdev = str(d.vdev);
  if (!vdev) return null;
  const parts = [`vdev=${vdev}`];
  const format = str(d.format);
  if (format && format !== 'unknown' && format !== 'empty') parts.push(`format=${format}`);
  parts.push(`access=${num(d.readwrite) === 0 ? 'ro' : 'rw'}`);
  const backend = str(d.backend);
  if (backend && backend !== 'unknown') parts.push(`backendtype=${backend}`);
  if (str(d.script)) parts.push(`script=${str(d.script)}`);
  if (num(d.is_cdrom) === 1) parts.push('devtype=cdrom');
  parts.push(target ? `target=${target}` : 'target=');
  return parts.join(', ');
}

function vifSpec(n: Obj): string {
  const parts: string[] = [];
  for (const k of ['mac', 'bridge', 'ip', 'script', 'model', 'gatewaydev', 'vifname', 'rate']) {
    const v = str(n[k]);
    if (v) parts.push(`${k}=${v}`);
  }
  const type = str(n.nictype);
  if (type) parts.push(`type=${type === 'vif_ioemu' ? 'ioemu' : 'vif'}`);
  return parts.join(', ');
}

/**
 * Convert a libxl JSON configuration into xl.cfg lines for a (recovery) domain named `name` with
 * `memory`/`maxmem` in KiB. Throws nothing: unknown parts end up in `unmapped`.
 */
export function toXlConfig(cfg: Obj, o: { name: string; memoryKiB?: number; maxMemKiB?: number; cmdline?: KernelCmdlineEdits; extra?: readonly string[] }): XlConfig {
  const unmapped: string[] = [];
  const c = isObj(cfg.c_info) ? cfg.c_info : {};
  const b = isObj(cfg.b_info) ? cfg.b_info : {};
  for (const k of Object.keys(cfg)) if (!TOP_KNOWN.has(k) && !isEmpty(cfg[k])) unmapped.push(k);
  for (const k of Object.keys(c)) if (!C_INFO_KNOWN.has(k) && !isEmpty(c[k])) unmapped.push(`c_info.${k}`);
  for (const k of Object.keys(b)) if (!B_INFO_KNOWN.has(k) && !isEmpty(b[k]) && !k.startsWith('type.')) unmapped.push(`b_info.${k}`);
  if (isObj(b['type.hvm'])) unmapped.push('b_info.type.hvm (HVM guests need configFile)');

  const type = str(c.type) ?? 'pv';
  const maxMemKiB = num(b.max_memkb) ?? 0;
  const targetMemKiB = num(b.target_memkb) ?? maxMemKiB;
  const lines: string[] = [];
  lines.push(`name = ${q(o.name)}`);
  lines.push(`type = ${q(type)}`);
  const mem = o.memoryKiB ?? targetMemKiB;
  const max = Math.max(o.maxMemKiB ?? maxMemKiB, mem);
  lines.push(`memory = ${Math.max(1, Math.floor(mem / 1024))}`);
  lines.push(`maxmem = ${Math.ceil(max / 1024)}`);
  const avail = Array.isArray(b.avail_vcpus) ? b.avail_vcpus.length : undefined;
  const maxv = num(b.max_vcpus);
  if (avail !== undefined) lines.push(`vcpus = ${avail}`);
  if (maxv !== undefined && maxv !== avail) lines.push(`maxvcpus = ${maxv}`);
  const tsc = str(b.tsc_mode);
  if (tsc && tsc !== 'default') lines.push(`tsc_mode = ${q(tsc)}`);
  const pv = isObj(b['type.pv']) ? b['type.pv'] : {};
  const bootloader = str(pv.bootloader) ?? str(b.bootloader);
  if (bootloader) {
    lines.push(`bootloader = ${q(bootloader)}`);
    const args = pv.bootloader_args ?? b.bootloader_args;
    if (Array.isArray(args) && args.length) lines.push(`bootloader_args = [${args.map((a) => q(String(a))).join(', ')}]`);
  }
  const kernel = str(b.kernel) ?? str(pv.kernel);
  const ramdisk = str(b.ramdisk) ?? str(pv.ramdisk);
  const cmdline = str(b.cmdline) ?? str(pv.cmdline);
  if (kernel) lines.push(`kernel = ${q(kernel)}`);
  if (ramdisk) lines.push(`ramdisk = ${q(ramdisk)}`);
  if (cmdline !== undefined || o.cmdline) lines.push(`cmdline = ${q(editKernelCmdline(cmdline ?? '', o.cmdline))}`);
  const disks: { target: string; vdev: string; backend?: string }[] = [];
  const diskSpecs: string[] = [];
  for (const d of Array.isArray(cfg.disks) ? cfg.disks : []) {
    if (!isObj(d)) continue;
    const spec = diskSpec(d);
    if (!spec) continue;
    diskSpecs.push(spec);
    disks.push({ target: str(d.pdev_path) ?? '', vdev: str(d.vdev)!, backend: str(d.backend) });
  }
  if (diskSpecs.length) lines.push(`disk = [ ${diskSpecs.map(q).join(', ')} ]`);
  const vifs = (Array.isArray(cfg.nics) ? cfg.nics : []).filter(isObj).map(vifSpec);
  if (vifs.length) lines.push(`vif = [ ${vifs.map(q).join(', ')} ]`);
  for (const a of ACTIONS) {
    const v = str(cfg[a]);
    if (v) lines.push(`${a} = ${q(v.replace(/_/g, '-'))}`);
  }
  for (const e of o.extra ?? []) lines.push(e);
  return { lines, type, name: o.name, maxMemKiB, targetMemKiB, disks, unmapped };
}
