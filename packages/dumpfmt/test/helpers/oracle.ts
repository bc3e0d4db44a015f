/**
 * Independent readers we did not write: Debian's python3-libkdumpfile (under /usr/bin/python3 only),
 * liblzo2 / libsnappy / zlib through ctypes, readelf, gdb, makedumpfile.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const PY = '/usr/bin/python3';

export function runPy(script: string, args: string[] = [], input?: Buffer): { stdout: Buffer; stderr: string; status: number | null } {
  const r = spawnSync(PY, ['-c', script, ...args], { input, maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  return { stdout: r.stdout, stderr: r.stderr.toString(), status: r.status };
}

export function run(cmd: string, args: string[], input?: Buffer): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 28 });
  if (r.error) throw r.error;
  return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), status: r.status };
}

/**
 * Decompress pages with the C libraries. Input on stdin: for each page, u32 codec (1 zlib, 2 lzo,
 * 4 snappy), u32 length, data. Output: the decompressed pages concatenated (4096 each); a failure prints
 * to stderr and exits 1.
 */
const DECOMP = String.raw`
import ctypes, struct, sys
lzo = ctypes.CDLL('liblzo2.so.2'); snappy = ctypes.CDLL('libsnappy.so.1'); z = ctypes.CDLL('libz.so.1')
data = sys.stdin.buffer.read(); off = 0; out = bytearray()
dst = ctypes.create_string_buffer(4096)
i = 0
while off < len(data):
    codec, n = struct.unpack_from('<II', data, off); off += 8
    src = data[off:off+n]; off += n
    if codec == 1:
        dl = ctypes.c_ulong(4096); r = z.uncompress(dst, ctypes.byref(dl), src, ctypes.c_ulong(n)); got = dl.value
    elif codec == 2:
        dl = ctypes.c_size_t(4096); r = lzo.lzo1x_decompress_safe(src, ctypes.c_size_t(n), dst, ctypes.byref(dl), None); got = dl.value
    elif codec == 4:
        dl = ctypes.c_size_t(4096); r = snappy.snappy_uncompress(src, ctypes.c_size_t(n), dst, ctypes.byref(dl)); got = dl.value
    else:
        r = -99; got = 0
    if r != 0 or got != 4096:
        sys.stderr.write('page %d codec %d: status %d, %d bytes\n' % (i, codec, r, got)); sys.exit(1)
    out += dst.raw; i += 1
sys.stdout.buffer.write(out)
`;

export function cDecompress(items: { codec: number; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const it of items) {
    const h = Buffer.alloc(8);
    h.writeUInt32LE(it.codec, 0);
    h.writeUInt32LE(it.data.length, 4);
    parts.push(h, it.data);
  }
  const r = runPy(DECOMP, [], Buffer.concat(parts));
  if (r.status !== 0) throw new Error(`C decompression failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * Read every page of a kdump (or ELF) file with libkdumpfile. Prints JSON lines: for each pfn in
 * [0, maxPfn): "ok" pages are streamed as raw bytes to a file given as argv[2]; the JSON on stdout lists
 * which pfns read and which failed (with libkdumpfile's message).
 */
const KDUMP_READ = String.raw`
import kdumpfile, sys, json
path, out, maxpfn = sys.argv[1], sys.argv[2], int(sys.argv[3])
k = kdumpfile.kdumpfile(path)
res = {'ok': [], 'err': {}, 'attrs': {}}
for key in ('file.format', 'arch.name', 'linux.uts.release', 'linux.uts.machine', 'linux.uts.nodename', 'cpu.number', 'max_pfn'):
    try:
        v = k.attr[key]
        res['attrs'][key] = v if isinstance(v, (int, str)) else str(v)
    except Exception as e:
        res['attrs'][key] = 'ERR ' + str(e)
try:
    res['vmcoreinfo'] = bytes(k.attr['linux.vmcoreinfo.raw']).decode('latin1') if 'linux.vmcoreinfo.raw' in k.attr else None
except Exception as e:
    res['vmcoreinfo'] = 'ERR ' + str(e)
try:
    regs = k.attr['cpu']['0']['reg']
    res['cpu0'] = {n: regs[n] for n in ('rip', 'rsp', 'rax', 'r15', 'gs')}
    res['cpu0pid'] = k.attr['cpu']['0']['pid']
except Exception as e:
    res['cpu0'] = 'ERR ' + str(e)
with open(out, 'wb') as f:
    for pfn in range(maxpfn):
        try:
            b = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * 4096, 4096)
            f.write(b); res['ok'].append(pfn)
        except Exception as e:
            res['err'][pfn] = type(e).__name__ + ': ' + str(e)
print(json.dumps(res))
`;

export interface KdumpfileResult {
  ok: number[];
  err: Record<string, string>;
  attrs: Record<string, unknown>;
  vmcoreinfo?: string | null;
  cpu0?: Record<string, number> | string;
  cpu0pid?: number;
  /** The pages that read, concatenated in `ok` order. */
  data: Buffer;
}

export function libkdumpfileRead(path: string, maxPfn: number, outPath: string): KdumpfileResult {
  const r = runPy(KDUMP_READ, [path, outPath, String(maxPfn)]);
  if (r.status !== 0) throw new Error(`libkdumpfile failed on ${path}: ${r.stderr}`);
  const res = JSON.parse(r.stdout.toString()) as Omit<KdumpfileResult, 'data'>;
  return { ...res, data: readFileSync(outPath) };
}
