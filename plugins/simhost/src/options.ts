/** The `simhost` plugin's options: JSON Schema (validated by the core's loader) and their shape. */
import * as os from 'node:os';
import * as path from 'node:path';
import { CALIBRATED_BOOT } from './calibration.js';

export interface SimVmOptions {
  readonly name: string;
  readonly memoryMiB: number;
  readonly freePercent: number;
  readonly kernelPercent?: number;
  readonly cachePercent?: number;
  readonly thpPercent?: number;
  readonly levels: 4 | 5;
  readonly content: 'auto' | 'written' | 'generated';
  readonly seed?: number;
  readonly panic?: string;
  readonly cpus: number;
  /** Crash by itself this many seconds after the backend starts (unset: only on command). */
  readonly crashAfterSeconds?: number;
}

export interface SimhostOptions {
  readonly vms: readonly SimVmOptions[];
  readonly cacheDir: string;
  readonly disk: { readonly bandwidthMiBps?: number };
  readonly recovery: {
    readonly bootSeconds: number;
    readonly readMiB: number;
    readonly writeMiB: number;
    readonly touchedMiB: number;
    readonly steps: number;
    readonly http: boolean;
  };
  readonly dump: { readonly sink: 'auto' | 'file' | 'count'; readonly maxFileGiB: number };
  readonly growGranularityMiB: number;
  readonly vmcoreinfoNote: boolean;
  readonly commandSocket?: string;
}

export function defaultCacheDir(): string {
  return path.join(process.env.VICOVER_CACHE || path.join(os.homedir(), '.cache', 'vicover'), 'simhost');
}

const vmSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'memoryMiB'],
  properties: {
    name: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9._-]+$', description: 'VM name (file names, logs, reports)' },
    memoryMiB: { type: 'integer', minimum: 256, multipleOf: 128, description: 'guest memory in MiB (a multiple of 128: whole memory sections)' },
    freePercent: { type: 'number', minimum: 0, maximum: 95, default: 50, description: 'percent of guest memory in free buddy blocks' },
    kernelPercent: { type: 'number', minimum: 0, maximum: 100, description: 'percent of used pageblocks holding kernel allocations (default 5)' },
    cachePercent: { type: 'number', minimum: 0, maximum: 100, description: 'percent of the other used pageblocks holding page cache, the rest anonymous memory (default 50)' },
    thpPercent: { type: 'number', minimum: 0, maximum: 100, description: 'percent of anonymous pageblocks that are transparent huge pages (default 50)' },
    levels: { enum: [4, 5], default: 4, description: 'page-table levels of the guest kernel' },
    content: { enum: ['auto', 'written', 'generated'], default: 'auto', description: 'data pages written into the RAM file, or generated on read (auto: written up to 2 GiB)' },
    seed: { type: 'integer', minimum: 0, description: 'seed of the page layout and contents' },
    panic: { type: 'string', minLength: 1, maxLength: 200, description: 'the panic message in the guest kernel log' },
    cpus: { type: 'integer', minimum: 1, maximum: 64, default: 2, description: 'vCPUs (one NT_PRSTATUS note each)' },
    crashAfterSeconds: { type: 'number', minimum: 0, description: 'crash by itself this many seconds after the daemon starts (unset: on command only)' },
  },
} as const;

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    vms: { type: 'array', minItems: 1, items: vmSchema, default: [{ name: 'sim1', memoryMiB: 4096 }], description: 'the simulated VMs' },
    cacheDir: { type: 'string', minLength: 1, description: 'where generated guest images are kept (default $VICOVER_CACHE/simhost or ~/.cache/vicover/simhost)' },
    disk: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        bandwidthMiBps: { type: 'number', exclusiveMinimum: 0, description: 'the modelled disk shared by dumps and recovery VMs (default: io.bandwidthMiBps, else 790)' },
      },
    },
    recovery: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: "the recovery VM's boot model (defaults calibrated on the real test guest, docs/simhost.md)",
      properties: {
        bootSeconds: { type: 'number', exclusiveMinimum: 0, default: CALIBRATED_BOOT.bootSeconds, description: 'boot to ready with the disk and memory to itself' },
        readMiB: { type: 'number', minimum: 0, default: CALIBRATED_BOOT.readMiB, description: 'MiB the boot reads from the shared disk' },
        writeMiB: { type: 'number', minimum: 0, default: CALIBRATED_BOOT.writeMiB, description: 'MiB the boot writes to the shared disk' },
        touchedMiB: { type: 'number', minimum: 0, default: CALIBRATED_BOOT.touchedMiB, description: 'guest memory the boot touches (it stalls while the VM has less)' },
        steps: { type: 'integer', minimum: 1, maximum: 10000, default: CALIBRATED_BOOT.steps, description: 'granularity of the boot model' },
        http: { type: 'boolean', default: true, description: 'serve the recovery VM on a local port ({tcp/80}) for http health checks' },
      },
    },
    dump: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        sink: { enum: ['auto', 'file', 'count'], default: 'auto', description: 'dumps go to a real file, a counting sink, or (auto) a file when it fits' },
        maxFileGiB: { type: 'number', exclusiveMinimum: 0, default: 1, description: 'auto: larger dumps (or dumps above half the free disk space) go to the counting sink' },
      },
    },
    growGranularityMiB: { type: 'integer', enum: [2, 4, 8, 16, 32, 64, 128], default: 2, description: 'step by which recovery VMs grow (chunks align to it)' },
    vmcoreinfoNote: { type: 'boolean', default: true, description: "offer the guest's VMCOREINFO as a note, like QEMU's -device vmcoreinfo" },
    commandSocket: { type: 'string', minLength: 1, description: 'unix socket taking commands: "crash VM", "status"' },
  },
} as const;
