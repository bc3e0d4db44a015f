/**
 * Format detection and the common read entry point.
 */
import { VcvError } from '@vicover/errors';
import { ElfCoreReader } from './elf/reader.js';
import { ELFMAG } from './elf/structs.js';
import { isFlatSignature } from './kdump/flat.js';
import { DISKDUMP_SIGNATURE, KDUMP_SIGNATURE } from './kdump/header.js';
import { KdumpReader } from './kdump/reader.js';
import { FileSource, FlatSource, readExact } from './source.js';
import type { DumpReader, ReaderOptions } from './types-reader.js';

export type DetectedFormat = 'kdump' | 'kdump-flattened' | 'elf' | 'unknown';

function classify(head: Buffer): DetectedFormat {
  if (head.length >= 8) {
    const sig = head.subarray(0, 8).toString('latin1');
    if (sig === KDUMP_SIGNATURE || sig === DISKDUMP_SIGNATURE) return 'kdump';
  }
  if (isFlatSignature(head)) return 'kdump-flattened';
  if (head.length >= 4 && head.subarray(0, 4).equals(ELFMAG)) return 'elf';
  return 'unknown';
}

/**
 * Look at the signature only: 'kdump' (KDUMP / DISKDUMP), 'kdump-flattened' (makedumpfile -F or QEMU
 * kdump-* output, whatever it carries), 'elf', or 'unknown'. Throws only when the file cannot be opened.
 */
export async function detectFormat(path: string): Promise<DetectedFormat> {
  const src = FileSource.open(path);
  try {
    return classify(readExact(src, 0, Math.min(16, src.size), 'file signature'));
  } finally {
    src.close();
  }
}

/**
 * Open any dump Vicover reads: kdump-compressed (seekable or flattened) or ELF (also flattened, as
 * `makedumpfile -F -E` writes). Unknown files give VCV_ERR_FORMAT_UNKNOWN.
 */
export async function openDump(path: string, opts: ReaderOptions = {}): Promise<DumpReader> {
  return openDumpSync(path, opts);
}

export function openDumpSync(path: string, opts: ReaderOptions = {}): DumpReader {
  const src = FileSource.open(path);
  try {
    const kind = classify(readExact(src, 0, Math.min(16, src.size), 'file signature'));
    switch (kind) {
      case 'kdump':
        return KdumpReader.fromSource(path, src, false, opts);
      case 'elf':
        return ElfCoreReader.fromSource(path, src, opts);
      case 'kdump-flattened': {
        const flat = FlatSource.open(src);
        const inner = classify(readExact(flat, 0, Math.min(16, flat.size), 'flattened payload signature'));
        if (inner === 'elf') return ElfCoreReader.fromSource(path, flat, opts);
        if (inner === 'kdump') return KdumpReader.fromSource(path, flat, true, opts);
        throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${path}: flattened file whose payload is neither kdump nor ELF`, { file: path });
      }
      default:
        throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${path} is not a dump Vicover reads (no kdump, flattened or ELF signature)`, { file: path });
    }
  } catch (e) {
    src.close();
    throw e;
  }
}
