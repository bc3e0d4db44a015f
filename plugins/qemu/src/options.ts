/** The `qemu` plugin's options: JSON Schema (validated by the core's loader) and their TypeScript shape. */
import { kernelCmdlineEditsSchema, type KernelCmdlineEdits } from '@vicover/hostutil';
import type { Layout } from './ramfile.js';

export interface RecoveryOptions {
  /** Directory for recovery VMs' RAM files (default: the directory of the crashed VM's RAM file). */
  readonly ramDir?: string;
  /** Boot memory of a growable recovery VM, MiB (the rest arrives through virtio-mem). */
  readonly bootMiB: number;
  readonly append?: KernelCmdlineEdits;
  readonly extraArgs?: readonly string[];
  /** A standing limit on the recovery VM's disk (emulates the device bandwidth; the I/O policy may lower it). */
  readonly ioLimitMiBps?: number;
  readonly ioLimitIops?: number;
}

export interface VmOptions {
  readonly name: string;
  readonly qmp: string;
  readonly ramFile: string;
  readonly memoryMiB: number;
  readonly layout: Layout;
  readonly disk?: string;
  readonly pidfile?: string;
  readonly argv?: readonly string[];
  readonly recovery: RecoveryOptions;
}

export interface QemuOptions {
  readonly vms: readonly VmOptions[];
  readonly stateDir: string;
  readonly blockSizeMiB: number;
  readonly reconnectMs: number;
  readonly timeouts: {
    readonly qmpMs: number;
    readonly quitMs: number;
    readonly startMs: number;
    readonly commandMs: number;
  };
  /** Recovery VMs die with the daemon (setpriv --pdeathsig KILL). For tests; a site wants them to live on. */
  readonly recoveryDiesWithDaemon: boolean;
  /** QEMU binary for recovery VMs (default: the crashed VM's own binary, from /proc/PID/exe). */
  readonly binary?: string;
}

const appendEdits = kernelCmdlineEditsSchema("edits to the kernel command line (-append) of recovery VMs started with -kernel");

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['vms'],
  properties: {
    vms: {
      type: 'array',
      minItems: 1,
      description: 'running QEMU instances to watch for crashes',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'qmp', 'ramFile', 'memoryMiB'],
        properties: {
          name: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9._-]+$', description: 'VM name (file names, logs, reports)' },
          qmp: { type: 'string', minLength: 1, description: 'QMP unix socket of the running QEMU (-qmp unix:PATH,server=on,wait=off)' },
          ramFile: { type: 'string', minLength: 1, description: 'guest RAM file: mem-path of its memory-backend-file (share=on), e.g. /dev/shm/web1.ram' },
          memoryMiB: { type: 'integer', minimum: 1, description: 'guest memory size in MiB (the RAM file size)' },
          layout: { enum: ['flat', 'pc', 'auto'], default: 'pc', description: "guest-physical layout of the RAM file: pc (QEMU pc machine: ≥ 3.5 GiB splits at 3 GiB, the rest from 4 GiB) or flat" },
          disk: { type: 'string', minLength: 1, description: "the VM's disk image as named in its command line (the recovery VM's drive to throttle; default: its only disk)" },
          pidfile: { type: 'string', minLength: 1, description: "QEMU's -pidfile: how to find its process, whose /proc/PID/cmdline is how to start it again" },
          argv: {
            type: 'array',
            minItems: 1,
            items: { type: 'string' },
            description: 'explicit command line to start the VM again (binary first); default: read from the running process',
          },
          recovery: {
            type: 'object',
            additionalProperties: false,
            default: {},
            description: 'how recovery VMs of this VM differ from it',
            properties: {
              ramDir: { type: 'string', minLength: 1, description: "directory for recovery VMs' RAM files (default: the RAM file's directory)" },
              bootMiB: { type: 'integer', minimum: 64, default: 256, description: 'boot memory of a recovery VM that starts small and grows through virtio-mem' },
              append: appendEdits,
              extraArgs: { type: 'array', items: { type: 'string' }, description: 'extra QEMU arguments for recovery VMs' },
              ioLimitMiBps: { type: 'number', exclusiveMinimum: 0, description: "standing limit on the recovery VM's disk bandwidth, MiB/s (block_set_io_throttle)" },
              ioLimitIops: { type: 'integer', minimum: 1, description: "standing limit on the recovery VM's disk IOPS" },
            },
          },
        },
      },
    },
    stateDir: { type: 'string', minLength: 1, default: '/var/lib/vicover/qemu', description: 'where VM definitions and recovery VM sockets, pidfiles and logs are kept (created 0700)' },
    blockSizeMiB: { type: 'integer', enum: [2, 4, 8, 16, 32, 64, 128], default: 2, description: 'virtio-mem block size of recovery VMs (the growth granularity)' },
    reconnectMs: { type: 'integer', minimum: 50, default: 1000, description: 'retry interval for QMP connections to VMs that are not (yet) running' },
    timeouts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        qmpMs: { type: 'integer', minimum: 100, default: 10000, description: 'QMP connect and command timeout' },
        quitMs: { type: 'integer', minimum: 100, default: 20000, description: 'wait for QEMU to exit after quit before SIGKILL' },
        startMs: { type: 'integer', minimum: 1000, default: 60000, description: 'wait for a started recovery VM to answer QMP' },
        commandMs: { type: 'integer', minimum: 1000, default: 60000, description: 'timeout of external commands (fallocate)' },
      },
    },
    recoveryDiesWithDaemon: { type: 'boolean', default: false, description: 'kill recovery VMs when the daemon dies (tests); sites keep them running' },
    binary: { type: 'string', minLength: 1, description: 'QEMU binary for recovery VMs (default: the one the crashed VM ran)' },
  },
} as const;
