/** The `xen` plugin's options: JSON Schema (validated by the core's loader) and their TypeScript shape. */
import { kernelCmdlineEditsSchema, type KernelCmdlineEdits } from '@vicover/hostutil';

export interface RecoveryOptions {
  /** Edits of the kernel command line of recovery domains (PV/PVH direct kernel boot). */
  readonly cmdline?: KernelCmdlineEdits;
  /** Extra xl.cfg lines for recovery domains. */
  readonly extraConfig?: readonly string[];
}

export interface DomainOptions {
  readonly name: string;
  /** The xl.cfg the domain was created from; recovery domains are created from it (with name/memory overrides). */
  readonly configFile?: string;
  readonly recovery: RecoveryOptions;
}

export interface XenOptions {
  readonly domains: readonly DomainOptions[];
  readonly stateDir: string;
  readonly helper?: string;
  readonly xl: string;
  readonly xenstoreWatch: string;
  readonly watch: boolean;
  readonly pollMs: number;
  readonly detachDisks: boolean;
  readonly pvRelease: 'none' | 'decrease-reservation';
  readonly rawPageTables: boolean;
  readonly batchPages: number;
  readonly growGranularityMiB: number;
  readonly consoleDir: string;
  readonly cgroupRoot: string;
  readonly timeouts: {
    readonly commandMs: number;
    readonly createMs: number;
  };
}

const cmdline = kernelCmdlineEditsSchema('edits to the kernel command line of recovery domains');

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['domains'],
  properties: {
    domains: {
      type: 'array',
      minItems: 1,
      description: 'Xen domains (by name) to watch for crashes; each needs on_crash="preserve" in its xl.cfg',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9._-]+$', description: 'domain name as xl lists it' },
          configFile: { type: 'string', minLength: 1, description: "the domain's xl.cfg; recovery domains are created from it (default: its configuration from `xl list -l`)" },
          recovery: {
            type: 'object',
            additionalProperties: false,
            default: {},
            description: 'how recovery domains of this domain differ from it',
            properties: {
              cmdline,
              extraConfig: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'extra xl.cfg lines (KEY=VALUE) for recovery domains' },
            },
          },
        },
      },
    },
    stateDir: { type: 'string', minLength: 1, default: '/var/lib/vicover/xen', description: 'definitions, recovery domain configs and state, the lazily built helper (created 0700)' },
    helper: { type: 'string', minLength: 1, description: 'path of vicover-xen-helper (default: the package build, else built into stateDir on first use; needs libxen-dev)' },
    xl: { type: 'string', minLength: 1, default: 'xl', description: 'the xl binary' },
    xenstoreWatch: { type: 'string', minLength: 1, default: 'xenstore-watch', description: 'the xenstore-watch binary' },
    watch: { type: 'boolean', default: true, description: 'react to the xenstore watch @releaseDomain (fires on every crash/shutdown); polling runs anyway' },
    pollMs: { type: 'integer', minimum: 100, default: 2000, description: 'interval of the `xl list` poll for domains in state c' },
    detachDisks: { type: 'boolean', default: true, description: "force-detach the crashed domain's disks at capture, so the recovery domain can use them" },
    pvRelease: {
      enum: ['none', 'decrease-reservation'],
      default: 'none',
      description: 'PV guests: release dumped chunks with decrease_reservation anyway (it frees nothing until destroy: the pages stay referenced by the guest page tables) or not at all',
    },
    rawPageTables: { type: 'boolean', default: false, description: 'PV guests: dump page-table pages as they are (machine frames) instead of canonicalised to guest pfns' },
    batchPages: { type: 'integer', minimum: 1, maximum: 4096, default: 1024, description: 'pages per helper read (one foreign mapping per batch)' },
    growGranularityMiB: { type: 'integer', minimum: 1, default: 2, description: 'step by which recovery domains grow (xl mem-set); chunks are aligned to it' },
    consoleDir: { type: 'string', minLength: 1, default: '/var/log/xen/console', description: "where xenconsoled --log=guest writes guest-NAME.log (recovery domains' consoles are followed there)" },
    cgroupRoot: { type: 'string', minLength: 1, default: '/sys/fs/cgroup/vicover', description: 'cgroup v2 directory under which qdisk backends of recovery domains are limited (io.max)' },
    timeouts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        commandMs: { type: 'integer', minimum: 1000, default: 60000, description: 'timeout of xl commands' },
        createMs: { type: 'integer', minimum: 1000, default: 180000, description: 'timeout of `xl create` for a recovery domain' },
      },
    },
  },
} as const;
