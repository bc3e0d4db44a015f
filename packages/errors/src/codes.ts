/**
 * The one catalogue of Vicover error codes. Every code is documented in docs/errors.md
 * (a test fails when one is not). Exit codes follow sysexits(3) where one fits.
 *
 * Add new codes to the section of your package; keep summaries one sentence.
 */
export const exitCodes = {
  ok: 0,
  failure: 1,
  usage: 64, // EX_USAGE
  dataErr: 65, // EX_DATAERR: the input (dump, image, guest memory) is bad
  noInput: 66, // EX_NOINPUT
  unavailable: 69, // EX_UNAVAILABLE: a backend / external program is not available
  software: 70, // EX_SOFTWARE: internal error
  cantCreate: 73, // EX_CANTCREAT
  ioErr: 74, // EX_IOERR (full disk, EIO)
  tempFail: 75, // EX_TEMPFAIL (interrupted, can be retried)
  config: 78, // EX_CONFIG
} as const;

export interface CodeInfo {
  /** One sentence: what went wrong. */
  readonly summary: string;
  /** Process exit code when this error ends a CLI command. */
  readonly exit: number;
}

const c = (summary: string, exit: number): CodeInfo => ({ summary, exit });

export const codes = {
  // ── general ──────────────────────────────────────────────────────────────
  VCV_ERR_INTERNAL: c('An internal error: a bug in Vicover.', exitCodes.software),
  VCV_ERR_USAGE: c('The command line is wrong (unknown option, missing argument, bad value).', exitCodes.usage),
  VCV_ERR_INPUT_NOT_FOUND: c('An input file (image, dump, config) does not exist or cannot be opened.', exitCodes.noInput),
  VCV_ERR_OUTPUT_EXISTS: c('The output file already exists; Vicover never overwrites evidence.', exitCodes.cantCreate),
  VCV_ERR_OUTPUT_CREATE: c('The output file or directory cannot be created.', exitCodes.cantCreate),
  VCV_ERR_NO_SPACE: c('The disk holding the dump is full (ENOSPC / EDQUOT); the dump is marked incomplete.', exitCodes.ioErr),
  VCV_ERR_IO: c('A read or write failed (EIO or similar).', exitCodes.ioErr),
  VCV_ERR_TIMEOUT: c('An operation did not finish within its time limit.', exitCodes.tempFail),
  VCV_ERR_ABORTED: c('The operation was cancelled (signal or shutdown).', exitCodes.tempFail),

  // ── configuration ────────────────────────────────────────────────────────
  VCV_ERR_CONFIG_NOT_FOUND: c('No configuration file was found, or the one named by --config does not exist.', exitCodes.config),
  VCV_ERR_CONFIG_PARSE: c('The configuration file is not valid JSON/YAML/JavaScript.', exitCodes.config),
  VCV_ERR_CONFIG_INVALID: c('The configuration does not match the schema of the core or of a plugin.', exitCodes.config),

  // ── plugins and hooks ────────────────────────────────────────────────────
  VCV_ERR_PLUGIN_NOT_FOUND: c('A plugin named in the configuration cannot be found (package not installed, path does not exist).', exitCodes.config),
  VCV_ERR_PLUGIN_LOAD: c('A plugin module was found but failed to load (syntax error, throws at import).', exitCodes.config),
  VCV_ERR_PLUGIN_INVALID: c('A plugin module does not export a valid plugin (an object or class with a name and apply()).', exitCodes.config),
  VCV_ERR_PLUGIN_VERSION: c("A plugin's supported core version range does not include this core's version.", exitCodes.config),
  VCV_ERR_PLUGIN_OPTIONS: c("A plugin's options do not match the plugin's own JSON Schema.", exitCodes.config),
  VCV_ERR_PLUGIN_DUPLICATE: c('Two plugins with the same name were loaded.', exitCodes.config),
  VCV_ERR_PLUGIN_APPLY: c("A plugin's apply() threw.", exitCodes.config),
  VCV_ERR_HOOK_FAILED: c('A plugin tap threw; the error names the plugin and the hook.', exitCodes.software),
  VCV_ERR_HOOK_RESULT: c('A plugin tap returned a value of the wrong shape for its hook.', exitCodes.software),
  VCV_ERR_NO_BACKEND: c('No backend plugin is loaded, or the named backend is not available.', exitCodes.config),
  VCV_ERR_PROVIDER_CONFLICT: c('Two plugins registered the same provider (backend, I/O policy, recovery strategy).', exitCodes.config),

  // ── dump formats (kdump-compressed, ELF) ────────────────────────────────
  VCV_ERR_FORMAT_UNKNOWN: c('The file is not a format Vicover reads (no kdump, flattened or ELF signature; not a crash report).', exitCodes.dataErr),
  VCV_ERR_FORMAT_TRUNCATED: c('The file ends before a structure it declares (cut short).', exitCodes.dataErr),
  VCV_ERR_FORMAT_INVALID: c('A header field holds an impossible value (bad size, offset out of the file, overlapping tables).', exitCodes.dataErr),
  VCV_ERR_FORMAT_UNSUPPORTED: c('The file uses a feature this reader does not implement (compression, endianness, class).', exitCodes.dataErr),
  VCV_ERR_PAGE_NOT_DUMPED: c('The requested page is not in the dump (excluded, a hole, or lost in an incomplete dump).', exitCodes.dataErr),
  VCV_ERR_PAGE_CORRUPT: c('A page in the dump cannot be decompressed or has the wrong size.', exitCodes.dataErr),
  VCV_ERR_WRITER_STATE: c('The dump writer was used out of order (data before layout, write after finish, page outside the selected set).', exitCodes.software),
  VCV_ERR_WRITER_OPTIONS: c('The dump writer was given options it cannot use (bitmap sizes that do not match maxPfn, unknown codec, misaligned page data).', exitCodes.software),
  VCV_ERR_RESUME_MISMATCH: c('A dump cannot be resumed from the given checkpoint (different file layout, or the file is shorter than its durable data).', exitCodes.dataErr),

  // ── guest memory and introspection ──────────────────────────────────────
  VCV_ERR_MEMORY_RANGE: c('A guest-physical address lies outside the RAM of the memory image.', exitCodes.dataErr),
  VCV_ERR_IMAGE_LAYOUT: c('The raw RAM file does not fit the given layout (size, holes).', exitCodes.dataErr),
  VCV_ERR_VMCOREINFO_NOT_FOUND: c('No VMCOREINFO was found: not in the dump notes, not given, and not found by scanning guest RAM.', exitCodes.dataErr),
  VCV_ERR_VMCOREINFO_INVALID: c('VMCOREINFO is present but a required value is missing or nonsensical.', exitCodes.dataErr),
  VCV_ERR_TRANSLATION: c('A kernel virtual address could not be translated through the guest page tables.', exitCodes.dataErr),
  VCV_ERR_INTROSPECTION: c('Guest kernel structures are inconsistent (corrupt or hostile memory); Vicover falls back to a full dump.', exitCodes.dataErr),
  VCV_ERR_PRINTK: c('The kernel log ring buffer could not be read.', exitCodes.dataErr),

  // ── backends, sessions, recovery ────────────────────────────────────────
  VCV_ERR_BACKEND: c('A backend operation failed (hypervisor command, memory mapping, release).', exitCodes.unavailable),
  VCV_ERR_COMMAND_FAILED: c('An external command exited with an error; its stderr is in the message.', exitCodes.unavailable),
  VCV_ERR_COMMAND_NOT_FOUND: c('An external command needed by a plugin is not installed.', exitCodes.unavailable),
  VCV_ERR_SESSION: c('A crash session failed; the dump is kept and marked incomplete where possible.', exitCodes.software),
  VCV_ERR_RELEASE_BEFORE_DURABLE: c('A chunk was about to be released before its pages were durable; refused.', exitCodes.software),
  VCV_ERR_RECOVERY: c('The recovery VM could not be started, grown or checked.', exitCodes.unavailable),
  VCV_ERR_IO_POLICY: c('The I/O policy returned shares that are not usable (negative, NaN, above the device bandwidth).', exitCodes.software),
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof codes;
