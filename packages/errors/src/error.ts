import { codes, type ErrorCode } from './codes.js';

/** Context that makes an error actionable: which plugin, which hook, which file, where in it. */
export interface VcvErrorDetails {
  plugin?: string;
  hook?: string;
  file?: string;
  /** JSON path into a config or structure, e.g. `plugins[2].options.chunkMiB`. */
  path?: string;
  line?: number;
  column?: number;
  /** Byte offset into a binary file. */
  offset?: number;
  /** Anything else worth logging (kept small: no page data). */
  [key: string]: unknown;
}

/**
 * Every error Vicover raises on purpose. `code` is one of the catalogue's `VCV_ERR_*` codes;
 * `exitCode` is the process exit status the CLI uses when this error ends a command.
 */
export class VcvError extends Error {
  readonly code: ErrorCode;
  readonly details: VcvErrorDetails;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, details: VcvErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    if (!(code in codes)) throw new TypeError(`unknown Vicover error code ${code}`);
    this.name = 'VcvError';
    this.code = code;
    this.details = details;
    this.exitCode = codes[code].exit;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, ...this.details };
  }
}

export function isVcvError(e: unknown, code?: ErrorCode): e is VcvError {
  return e instanceof VcvError && (code === undefined || e.code === code);
}

/**
 * Wrap an unknown thrown value. Node system errors map to the matching code (ENOSPC → VCV_ERR_NO_SPACE,
 * ENOENT → VCV_ERR_INPUT_NOT_FOUND, EEXIST → VCV_ERR_OUTPUT_EXISTS, other errno → VCV_ERR_IO).
 */
export function wrapError(e: unknown, fallback: ErrorCode, message: string, details: VcvErrorDetails = {}): VcvError {
  if (e instanceof VcvError) return e;
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  let code: ErrorCode = fallback;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') code = 'VCV_ERR_NO_SPACE';
  else if (errno === 'ENOENT' && fallback === 'VCV_ERR_IO') code = 'VCV_ERR_INPUT_NOT_FOUND';
  else if (errno === 'EEXIST') code = 'VCV_ERR_OUTPUT_EXISTS';
  else if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno) && fallback === 'VCV_ERR_INTERNAL') code = 'VCV_ERR_IO';
  const reason = e instanceof Error ? e.message : String(e);
  return new VcvError(code, `${message}: ${reason}`, errno ? { ...details, errno } : details, { cause: e });
}
