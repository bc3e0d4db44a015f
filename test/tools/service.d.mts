export function sleep(ms: number): Promise<void>;
export function until<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs?: number, everyMs?: number): Promise<T>;
export function httpGet(url: string, timeoutMs?: number): Promise<string | null>;
export class ClientPoller {
  constructor(url: string, expect: RegExp, everyMs?: number);
  readonly samples: { t: number; ok: boolean }[];
  start(): void;
  stop(): void;
  answered(): boolean;
  firstOkAfter(t: number): number | null;
  lastOkBefore(t: number): number | null;
}
export function allocatedBytes(file: string): number;
