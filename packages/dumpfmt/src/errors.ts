import { VcvError, type ErrorCode, type VcvErrorDetails } from '@vicover/errors';

/** Helpers that build the coded errors this package raises. Kept small so call sites stay readable. */

export function truncated(what: string, details: VcvErrorDetails = {}): VcvError {
  return new VcvError('VCV_ERR_FORMAT_TRUNCATED', `${what}: the file ends before it`, details);
}

export function invalid(message: string, details: VcvErrorDetails = {}): VcvError {
  return new VcvError('VCV_ERR_FORMAT_INVALID', message, details);
}

export function unsupported(message: string, details: VcvErrorDetails = {}): VcvError {
  return new VcvError('VCV_ERR_FORMAT_UNSUPPORTED', message, details);
}

export function err(code: ErrorCode, message: string, details: VcvErrorDetails = {}): VcvError {
  return new VcvError(code, message, details);
}

/** Convert a u64 read as bigint to a number, or fail with FORMAT_INVALID when it cannot be exact. */
export function safeNumber(v: bigint, field: string, details: VcvErrorDetails = {}): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalid(`${field} = ${v} is out of range`, { ...details, field });
  }
  return Number(v);
}
