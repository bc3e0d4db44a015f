/**
 * QEMU command lines: parse them into (option, value) pairs, read the parts a backend cares about
 * (RAM backend, QMP socket, disks, forwarded ports, console), and derive a recovery VM's command line
 * from a crashed VM's: same CPU, devices, disk, network — new RAM files, its own QMP socket and
 * pidfile, and (when it starts with less than its full memory) a virtio-mem device to grow into.
 *
 * QEMU option values are comma lists (`memory-backend-file,id=ram,size=1G`); a literal comma is
 * written `,,`.
 */
import { editKernelCmdline, type KernelCmdlineEdits } from '@vicover/hostutil';
import * as path from 'node:path';
import { VcvError } from '@vicover/errors';

/** Options that take no value (everything else takes exactly one). */
const NO_VALUE = new Set([
  'nodefaults', 'no-user-config', 'S', 'daemonize', 'snapshot', 'enable-kvm', 'no-reboot', 'no-shutdown',
  'nographic', 'no-hpet', 'no-acpi', 's', 'full-screen', 'no-fd-bootchk', 'win2k-hack', 'rtc-td-hack', 'no-kvm',
  'alt-grab', 'ctrl-grab', 'no-quit', 'only-migratable', 'preconfig', 'usb', 'enable-fips', 'xen-attach',
  'old-param', 'semihosting', 'no-frame', 'nouserconfig', 'version', 'help',
]);

export interface Arg {
  /** Option name without dashes (`m`, `object`, `drive`, …). */
  readonly opt: string;
  readonly value?: string;
}

export function parseArgv(argv: readonly string[]): Arg[] {
  const out: Arg[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) {
      // A bare word is the disk image shorthand (`qemu-system-x86_64 disk.img`).
      out.push({ opt: 'hda', value: a });
      continue;
    }
    const opt = a.replace(/^--?/, '');
    if (NO_VALUE.has(opt)) out.push({ opt });
    else {
      if (i + 1 >= argv.length) throw new VcvError('VCV_ERR_BACKEND', `qemu: option -${opt} has no value in the VM's command line`, { option: opt });
      out.push({ opt, value: argv[++i]! });
    }
  }
  return out;
}

export function formatArgv(args: readonly Arg[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    out.push(`-${a.opt}`);
    if (a.value !== undefined) out.push(a.value);
  }
  return out;
}

/** One element of a QEMU comma list: `key=value`, or a bare word (`key` with value undefined). */
export interface Prop {
  readonly key: string;
  readonly value?: string;
}

export function parseProps(s: string): Prop[] {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === ',') {
      if (s[i + 1] === ',') {
        cur += ',';
        i++;
      } else {
        items.push(cur);
        cur = '';
      }
    } else cur += ch;
  }
  items.push(cur);
  return items.filter((x) => x !== '').map((it) => {
    const eq = it.indexOf('=');
    return eq < 0 ? { key: it } : { key: it.slice(0, eq), value: it.slice(eq + 1) };
  });
}

export function formatProps(props: readonly Prop[]): string {
  const esc = (x: string) => x.replace(/,/g, ',,');
  return props.map((p) => (p.value === undefined ? esc(p.key) : `${esc(p.key)}=${esc(p.value)}`)).join(',');
}

export function prop(props: readonly Prop[], key: string): string | undefined {
  return props.find((p) => p.key === key)?.value;
}

function setProp(props: readonly Prop[], key: string, value: string | undefined): Prop[] {
  const out = props.filter((p) => p.key !== key);
  if (value !== undefined) out.push({ key, value });
  return out;
}

/** QEMU size syntax: bytes, or a number with a k/M/G/T suffix (binary); `-m` without a suffix means MiB. */
export function parseSize(s: string, defaultUnit = 1): number {
  const m = /^(\d+(?:\.\d+)?)([kKmMgGtT]?)[bB]?$/.exec(s.trim());
  if (!m) throw new VcvError('VCV_ERR_BACKEND', `qemu: cannot read the size "${s}"`, { size: s });
  const unit = { '': defaultUnit, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * unit);
}

export interface RamInfo {
  /** id of the memory backend object named by -machine memory-backend=. */
  readonly backendId: string;
  readonly memPath: string;
  readonly sizeBytes: number;
  readonly share: boolean;
}

/** The guest RAM's memory-backend-file (via -machine memory-backend=ID). */
export function ramOf(args: readonly Arg[]): RamInfo | null {
  let backendId: string | undefined;
  for (const a of args) if ((a.opt === 'machine' || a.opt === 'M') && a.value) backendId = prop(parseProps(a.value), 'memory-backend') ?? backendId;
  if (!backendId) return null;
  for (const a of args) {
    if (a.opt !== 'object' || !a.value) continue;
    const p = parseProps(a.value);
    if (p[0]?.key !== 'memory-backend-file' || prop(p, 'id') !== backendId) continue;
    const memPath = prop(p, 'mem-path');
    const size = prop(p, 'size');
    if (!memPath || !size) return null;
    return { backendId, memPath, sizeBytes: parseSize(size), share: /^(on|yes|true)$/.test(prop(p, 'share') ?? '') };
  }
  return null;
}

/** Unix socket paths of QMP monitors (`-qmp unix:PATH,…`, `-chardev socket,path=PATH` + `-mon mode=control`). */
export function qmpSocketsOf(args: readonly Arg[]): string[] {
  const out: string[] = [];
  const control = new Set<string>();
  for (const a of args) {
    if (a.opt === 'mon' && a.value) {
      const p = parseProps(a.value);
      if (prop(p, 'mode') === 'control') control.add(prop(p, 'chardev') ?? '');
    }
  }
  for (const a of args) {
    if ((a.opt === 'qmp' || a.opt === 'qmp-pretty') && a.value?.startsWith('unix:')) out.push(parseProps(a.value.slice(5))[0]!.key);
    if (a.opt === 'chardev' && a.value) {
      const p = parseProps(a.value);
      if (p[0]?.key === 'socket' && control.has(prop(p, 'id') ?? '\0')) {
        const pth = prop(p, 'path');
        if (pth) out.push(pth);
      }
    }
  }
  return out;
}

export interface DriveInfo {
  /** The name block_set_io_throttle / query-blockstats know it by. */
  readonly ref: { readonly device: string } | { readonly id: string };
  readonly file: string;
  /** Index into args of the -drive/-blockdev option. */
  readonly argIndex: number;
}

/** Disks: `-drive file=…,id=…` (throttled by drive id) or `-blockdev` + `-device …,drive=NODE,id=DEV`. */
export function drivesOf(args: readonly Arg[]): DriveInfo[] {
  const out: DriveInfo[] = [];
  args.forEach((a, i) => {
    if (a.opt === 'drive' && a.value) {
      const p = parseProps(a.value);
      const file = prop(p, 'file');
      const id = prop(p, 'id');
      if (file && prop(p, 'media') !== 'cdrom') out.push({ ref: { device: id ?? '' }, file, argIndex: i });
    } else if ((a.opt === 'hda' || a.opt === 'hdb') && a.value) {
      out.push({ ref: { device: a.opt === 'hda' ? 'ide0-hd0' : 'ide0-hd1' }, file: a.value, argIndex: i });
    } else if (a.opt === 'blockdev' && a.value) {
      // -blockdev driver=qcow2,node-name=N,file.driver=file,file.filename=F (JSON form not handled)
      const p = parseProps(a.value);
      const node = prop(p, 'node-name');
      const file = prop(p, 'file.filename') ?? prop(p, 'filename');
      if (!node || !file) return;
      const dev = args.find((d) => d.opt === 'device' && d.value && prop(parseProps(d.value), 'drive') === node);
      const devId = dev?.value ? prop(parseProps(dev.value), 'id') : undefined;
      out.push({ ref: { id: devId ?? '' }, file, argIndex: i });
    }
  });
  return out;
}

/** Host endpoints of forwarded guest ports: `tcp/80` → `127.0.0.1:8080`. */
export function endpointsOf(args: readonly Arg[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    if (a.opt !== 'netdev' && a.opt !== 'nic' && a.opt !== 'net') continue;
    for (const p of parseProps(a.value ?? '')) {
      if (p.key !== 'hostfwd' || !p.value) continue;
      // [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport
      const m = /^(tcp|udp)?:([^:]*):(\d+)-([^:]*):(\d+)$/.exec(p.value);
      if (!m) continue;
      out[`${m[1] ?? 'tcp'}/${m[5]}`] = `${m[2] || '127.0.0.1'}:${m[3]}`;
    }
  }
  return out;
}

/** The first `-serial file:PATH` (the guest's console when it runs with console=ttyS0). */
export function consoleFileOf(args: readonly Arg[]): string | null {
  const s = args.find((a) => a.opt === 'serial');
  return s?.value?.startsWith('file:') ? s.value.slice(5) : null;
}

export interface RecoveryArgvInput {
  readonly args: readonly Arg[];
  /** The crashed VM's QMP socket (its monitors are replaced by ours). */
  readonly crashedQmp: string;
  readonly qmpPath: string;
  readonly pidfile: string;
  /** Where the recovery VM's console log goes (replaces -serial file:). */
  readonly consoleLog: string | null;
  /** Boot RAM file and its size; the VM's full size; the virtio-mem file (when growable). */
  readonly bootFile: string;
  readonly bootBytes: number;
  readonly fullBytes: number;
  /**
   * The virtio-mem device of a growable VM: its memory backend spans `regionBytes` (a multiple of the
   * guest's memory block size — Linux cannot use a partial block at the end of the region); at most
   * fullBytes − bootBytes of it is ever plugged.
   */
  readonly vmem: { readonly file: string; readonly pluggedBytes: number; readonly blockBytes: number; readonly regionBytes: number } | null;
  readonly append?: KernelCmdlineEdits;
  readonly extraArgs?: readonly string[];
}

const MiB = 1024 * 1024;

export const VMEM_OBJECT_ID = 'vcv-vmem';
export const VMEM_DEVICE_ID = 'vcv-vmem0';

/** Derive the recovery VM's command line (without the binary). */
export function recoveryArgv(i: RecoveryArgvInput): string[] {
  const ram = ramOf(i.args);
  if (!ram) {
    throw new VcvError('VCV_ERR_RECOVERY', 'qemu: the VM definition has no memory-backend-file named by -machine memory-backend= (required to start it again)', {});
  }
  const out: Arg[] = [];
  let haveSerialFile = false;
  for (const a of i.args) {
    switch (a.opt) {
      case 'daemonize':
      case 'S':
      case 'incoming':
      case 'pidfile':
      case 'loadvm':
        continue; // we manage the process ourselves and want a fresh boot
      case 'qmp':
      case 'qmp-pretty':
        continue; // ours is added below
      case 'm':
        continue; // replaced below
      case 'object': {
        const p = parseProps(a.value ?? '');
        if (p[0]?.key === 'memory-backend-file' && prop(p, 'id') === ram.backendId) {
          let q = setProp(p, 'mem-path', i.bootFile);
          q = setProp(q, 'size', String(i.bootBytes));
          q = setProp(q, 'share', 'on');
          out.push({ opt: 'object', value: formatProps(q) });
          continue;
        }
        break;
      }
      case 'chardev': {
        const p = parseProps(a.value ?? '');
        if (p[0]?.key === 'socket' && prop(p, 'path') === i.crashedQmp) {
          out.push({ opt: 'chardev', value: formatProps(setProp(p, 'path', i.qmpPath)) });
          continue;
        }
        break;
      }
      case 'serial':
        if (!haveSerialFile && a.value?.startsWith('file:') && i.consoleLog) {
          haveSerialFile = true;
          out.push({ opt: 'serial', value: `file:${i.consoleLog}` });
          continue;
        }
        break;
      case 'append': {
        const add = [...(i.append?.add ?? [])];
        // Hot-plugged memory must come online by itself: no udev in many guests.
        if (i.vmem) add.unshift('memhp_default_state=online');
        out.push({ opt: 'append', value: editKernelCmdline(a.value ?? '', { ...i.append, add }) });
        continue;
      }
      default:
        break;
    }
    out.push(a);
  }
  // -m reads a number without a suffix as MiB: always say the unit.
  const m = i.vmem ? `size=${i.bootBytes / MiB}M,maxmem=${(i.bootBytes + i.vmem.regionBytes) / MiB}M` : `${i.bootBytes / MiB}M`;
  out.unshift({ opt: 'm', value: m });
  if (i.vmem) {
    out.push({ opt: 'object', value: formatProps([{ key: 'memory-backend-file' }, { key: 'id', value: VMEM_OBJECT_ID }, { key: 'size', value: String(i.vmem.regionBytes) }, { key: 'mem-path', value: i.vmem.file }, { key: 'share', value: 'on' }]) });
    out.push({
      opt: 'device',
      value: formatProps([
        { key: 'virtio-mem-pci' },
        { key: 'id', value: VMEM_DEVICE_ID },
        { key: 'memdev', value: VMEM_OBJECT_ID },
        { key: 'requested-size', value: String(i.vmem.pluggedBytes) },
        { key: 'block-size', value: String(i.vmem.blockBytes) },
      ]),
    });
  }
  out.push({ opt: 'qmp', value: `unix:${i.qmpPath},server=on,wait=off` });
  out.push({ opt: 'pidfile', value: i.pidfile });
  const argv = formatArgv(out);
  if (i.extraArgs) argv.push(...i.extraArgs);
  return argv;
}

/** A file name safe for a VM name. */
export function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) || 'vm';
}

export function inDir(dir: string, file: string): string {
  return path.join(dir, file);
}
