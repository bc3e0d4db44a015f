/**
 * openImage: detect what a file is and open it as a MemorySource. A file with a kdump (KDUMP /
 * DISKDUMP), flattened (makedumpfile) or ELF signature is a vmcore; anything else is raw RAM.
 */
import type { MemorySource } from '@vicover/core';
import { detectFormat } from '@vicover/dumpfmt';
import { openDumpImage, openElfVmcore, openKdump } from './dump.js';
import { openRawImage, type RawLayout } from './raw.js';

export type ImageFormat = 'auto' | 'raw' | 'elf' | 'kdump';

export interface OpenImageOptions {
  /** Force a format (default auto-detect). */
  readonly format?: ImageFormat;
  /** Layout of a raw RAM file (default auto). */
  readonly layout?: RawLayout;
}

export async function openImage(path: string, opts: OpenImageOptions = {}): Promise<MemorySource> {
  const format = opts.format ?? 'auto';
  if (format === 'raw') return openRawImage(path, { layout: opts.layout ?? 'auto' });
  if (format === 'elf') return openElfVmcore(path);
  if (format === 'kdump') return openKdump(path);
  const kind = await detectFormat(path);
  if (kind === 'unknown') return openRawImage(path, { layout: opts.layout ?? 'auto' });
  return openDumpImage(path);
}
