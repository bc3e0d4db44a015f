/**
 * The core's configuration schema (JSON Schema draft-07, validated by ajv with defaults applied).
 * Every plugin adds its own schema for its options; see plugins.ts. Keep `description`s short: they are
 * quoted in error messages.
 */
export const MODES = ['vicover', 'coredump-restart', 'restart-only'] as const;
export type Mode = (typeof MODES)[number];

export const COMPRESSIONS = ['none', 'zlib', 'lzo', 'snappy'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

export const coreSchema = {
  $id: 'https://vicover.dev/schemas/config.json',
  title: 'Vicover configuration',
  type: 'object',
  additionalProperties: false,
  properties: {
    $schema: { type: 'string' },
    plugins: {
      description: 'plugins to load: a package name, a path, or a [nameOrPath, options] pair',
      type: 'array',
      default: [],
      items: {
        anyOf: [
          { type: 'string', minLength: 1 },
          {
            type: 'array',
            minItems: 1,
            maxItems: 2,
            items: [{ type: 'string', minLength: 1 }, { type: 'object' }],
          },
        ],
      },
    },
    backend: {
      description: 'which loaded backend manages the VMs (needed only when several backends are loaded)',
      type: 'string',
    },
    mode: {
      description: 'what to do on a crash: vicover (dump and recover in parallel), coredump-restart (full dump, then restart), restart-only (no dump)',
      enum: [...MODES],
      default: 'vicover',
    },
    dump: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        dir: { description: 'directory for dumps and reports (created 0700)', type: 'string', minLength: 1, default: '/var/lib/vicover/dumps' },
        format: { description: 'dump file format', enum: ['kdump', 'elf'], default: 'kdump' },
        compression: { description: 'per-page compression of kdump files (lzo: fastest that Debian makedumpfile and crash read)', enum: [...COMPRESSIONS], default: 'none' },
        level: { description: 'makedumpfile dump level: 1 zero, 2 cache, 4 private cache, 8 user data, 16 free pages', type: 'integer', minimum: 0, maximum: 31, default: 31 },
        chunkMiB: { description: 'handover chunk size in MiB (rounded up to the backend growth granularity)', type: 'integer', minimum: 1, maximum: 1048576, default: 128 },
        blockMiB: { description: 'read/write unit within a chunk, in MiB', type: 'integer', minimum: 1, maximum: 256, default: 4 },
        fsync: { description: 'fsync after every chunk before releasing its memory (turning it off forfeits the evidence guarantee)', type: 'boolean', default: true },
      },
    },
    sessions: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxConcurrent: { description: 'crash sessions that run side by side; further crashes queue', type: 'integer', minimum: 1, maximum: 64, default: 1 },
        maxQueued: { description: 'crashes that may wait for a slot; beyond this a crash is handled restart-only', type: 'integer', minimum: 0, maximum: 1024, default: 16 },
        recoveryTimeoutSec: { description: 'how long to wait for the recovery VM to pass its health check', type: 'integer', minimum: 1, default: 600 },
      },
    },
    io: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        bandwidthMiBps: { description: 'bandwidth of the disk holding the dump and the VM images, MiB/s (unset: no I/O scheduling)', type: 'number', exclusiveMinimum: 0 },
        iops: { description: 'I/O operations per second of that disk (unset: not limited)', type: 'integer', minimum: 1 },
        tickMs: { description: 'how often the I/O policy is asked for new shares', type: 'integer', minimum: 10, maximum: 60000, default: 100 },
      },
    },
    memory: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        marginMiB: { description: 'host memory a crash may use beyond the crashed VM size (recovery VM boot memory, buffers)', type: 'integer', minimum: 0, default: 256 },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
        format: { description: 'json lines, pretty text, or auto (pretty on a TTY)', enum: ['auto', 'json', 'pretty'], default: 'auto' },
      },
    },
    report: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        html: { description: 'also render the crash report as a self-contained HTML page', type: 'boolean', default: true },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        listen: { description: 'host:port for a Prometheus /metrics endpoint (unset: off)', type: 'string', pattern: '^[^:]*:[0-9]{1,5}$' },
      },
    },
  },
} as const;

/** The configuration after validation and defaults (frozen). */
export interface CoreConfig {
  readonly plugins: readonly (string | readonly [string, Record<string, unknown>?])[];
  readonly backend?: string;
  readonly mode: Mode;
  readonly dump: {
    readonly dir: string;
    readonly format: 'kdump' | 'elf';
    readonly compression: Compression;
    readonly level: number;
    readonly chunkMiB: number;
    readonly blockMiB: number;
    readonly fsync: boolean;
  };
  readonly sessions: { readonly maxConcurrent: number; readonly maxQueued: number; readonly recoveryTimeoutSec: number };
  readonly io: { readonly bandwidthMiBps?: number; readonly iops?: number; readonly tickMs: number };
  readonly memory: { readonly marginMiB: number };
  readonly log: { readonly level: string; readonly format: 'auto' | 'json' | 'pretty' };
  readonly report: { readonly html: boolean };
  readonly metrics: { readonly listen?: string };
}
