#!/usr/bin/python3
"""Independent check of a dump with libkdumpfile (Debian python3-libkdumpfile; /usr/bin/python3 only).

usage: kdump-pagecheck.py DUMP REFERENCE_RAM

Every page libkdumpfile can read from DUMP must equal the same page of REFERENCE_RAM (flat layout:
file offset = physical address; short reads are zero-padded). Prints one JSON object: pages read,
differing, missing (not in the dump), the first differing PFN, max_pfn, the number of CPUs in the
dump's NT_PRSTATUS notes and cpu0's rip as a hex string (JSON numbers cannot hold 64-bit addresses).
"""
import json
import sys

import kdumpfile

dump, ref = sys.argv[1], sys.argv[2]
k = kdumpfile.kdumpfile(dump)
maxpfn = int(k.attr['max_pfn'])
res = {'read': 0, 'mismatch': 0, 'missing': 0, 'firstMismatch': None, 'maxPfn': maxpfn}
with open(ref, 'rb') as f:
    for pfn in range(maxpfn):
        try:
            b = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * 4096, 4096)
        except Exception:
            res['missing'] += 1
            continue
        res['read'] += 1
        f.seek(pfn * 4096)
        r = f.read(4096)
        if len(r) < 4096:
            r = r + bytes(4096 - len(r))
        if b != r:
            res['mismatch'] += 1
            if res['firstMismatch'] is None:
                res['firstMismatch'] = pfn
try:
    res['cpus'] = len(k.attr['cpu'])
    res['cpu0rip'] = hex(k.attr['cpu']['0']['reg']['rip'])
except Exception:
    res['cpus'] = 0
    res['cpu0rip'] = None
print(json.dumps(res))
