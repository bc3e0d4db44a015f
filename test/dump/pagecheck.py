"""Independent content check of kdump files with Debian's python3-libkdumpfile (run it with
/usr/bin/python3: the python3 first on PATH cannot import Debian's packages).

Input: one JSON document on stdin, a list of jobs
  {"dump": PATH, "source": {"kind": "raw", "path": P, "ranges": [{"fileOffset", "gpa", "size"}]}}
  {"dump": PATH, "source": {"kind": "elf", "path": P}}
  optional "mask": KDUMP_PATH — compare only the pages that file holds; every other page present in
  "dump" must read as zeros (our ELF files keep short excluded runs inside a segment as zero holes)
Output: one JSON document on stdout, a list of results (same order)
  {"dump", "format", "maxPfn", "dumped", "checked", "mismatches", "firstMismatches": [pfn…],
   "outsideSource": N, "readErrors": N, "firstReadErrors": ["pfn: error"…],
   "maskedOut": N, "nonZeroMaskedOut": N}
Every page libkdumpfile reports as present ("file.pagemap") is read through libkdumpfile — which
decompresses it and resolves shared zero-page descriptors by itself — and compared with the same
guest-physical page of the source image. Contiguous runs are read up to 1 MiB at a time.
"""
import json
import mmap
import struct
import sys

import kdumpfile

PS = 4096
RUN = 256  # pages per libkdumpfile read


class Raw:
    def __init__(self, path, ranges):
        self.f = open(path, "rb")
        self.size = self.f.seek(0, 2)
        self.mm = mmap.mmap(self.f.fileno(), 0, prot=mmap.PROT_READ) if self.size else None
        # (gpa, end, fileOffset, filesz): bytes of the range past the end of the file read as zero
        self.segs = sorted((r["gpa"], r["gpa"] + r["size"], r["fileOffset"], r["size"]) for r in ranges)

    def run(self, gpa, n):
        """n pages at gpa as one slice when they lie in one segment, fully backed by the file; else None."""
        for start, end, off, filesz in self.segs:
            if start <= gpa < end:
                pos = off + gpa - start
                if gpa + n * PS <= end and gpa - start + n * PS <= filesz and pos + n * PS <= self.size:
                    return self.mm[pos:pos + n * PS]
                return None
        return None

    def page(self, gpa):
        for start, end, off, filesz in self.segs:
            if start <= gpa < end:
                pos = off + gpa - start
                if gpa - start >= filesz or pos + PS > self.size:
                    return bytes(PS)
                return self.mm[pos:pos + PS]
        return None


class Elf(Raw):
    def __init__(self, path):
        with open(path, "rb") as f:
            eh = f.read(64)
            if eh[:4] != b"\x7fELF" or eh[4] != 2:
                raise SystemExit("%s: not an ELF64 file" % path)
            phoff, = struct.unpack_from("<Q", eh, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", eh, 0x36)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
        ranges = []
        for i in range(phnum):
            p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz = struct.unpack_from("<IIQQQQQ", ph, i * phentsize)
            if p_type == 1 and p_memsz:
                ranges.append({"gpa": p_paddr, "size": p_memsz, "fileOffset": p_offset, "filesz": p_filesz})
        super().__init__(path, ranges)
        self.segs = sorted((r["gpa"], r["gpa"] + r["size"], r["fileOffset"], r["filesz"]) for r in ranges)


def check(job):
    src = job["source"]
    source = Raw(src["path"], src["ranges"]) if src["kind"] == "raw" else Elf(src["path"])
    k = kdumpfile.kdumpfile(job["dump"])
    max_pfn = k.attr["max_pfn"]
    pm = k.attr["file.pagemap"]
    out = {"dump": job["dump"], "format": str(k.attr["file.format"]), "maxPfn": max_pfn, "dumped": 0, "checked": 0,
           "mismatches": 0, "firstMismatches": [], "outsideSource": 0, "readErrors": 0, "firstReadErrors": [],
           "maskedOut": 0, "nonZeroMaskedOut": 0}
    mask = None
    if job.get("mask"):
        mk = kdumpfile.kdumpfile(job["mask"])
        mask = mk.attr["file.pagemap"].get_bits(0, mk.attr["max_pfn"] - 1)
    zero = bytes(PS)

    def compare(pfn, data):
        if mask is not None and not (pfn >> 3 < len(mask) and mask[pfn >> 3] >> (pfn & 7) & 1):
            out["maskedOut"] += 1
            if data != zero:
                out["nonZeroMaskedOut"] += 1
            return
        want = source.page(pfn * PS)
        out["checked"] += 1
        if want is None:
            out["outsideSource"] += 1
        elif data != want:
            out["mismatches"] += 1
            if len(out["firstMismatches"]) < 20:
                out["firstMismatches"].append(pfn)

    pfn = 0
    while pfn < max_pfn:
        try:
            pfn = pm.find_set(pfn)
        except Exception:
            break
        if pfn >= max_pfn:
            break
        end = min(pm.find_clear(pfn), max_pfn)
        out["dumped"] += end - pfn
        while pfn < end:
            n = min(RUN, end - pfn)
            try:
                buf = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * PS, n * PS)
                want = source.run(pfn * PS, n) if mask is None else None
                if want is not None and buf == want:
                    out["checked"] += n  # the whole run matches: no need to look page by page
                else:
                    mv = memoryview(buf)
                    for i in range(n):
                        compare(pfn + i, mv[i * PS:(i + 1) * PS])
            except Exception:
                # fall back to single pages to name the one that fails
                for i in range(n):
                    try:
                        compare(pfn + i, k.read(kdumpfile.KDUMP_MACHPHYSADDR, (pfn + i) * PS, PS))
                    except Exception as e:
                        out["readErrors"] += 1
                        if len(out["firstReadErrors"]) < 20:
                            out["firstReadErrors"].append("%d: %s" % (pfn + i, e))
            pfn += n
    return out


def main():
    jobs = json.load(sys.stdin)
    json.dump([check(j) for j in jobs], sys.stdout)


if __name__ == "__main__":
    main()
