/**
 * The kernel's utsname (`uname -a` fields) for the dump header: `struct new_utsname` (six
 * NUL-terminated char[65] fields) at SYMBOL(init_uts_ns) + OFFSET(uts_namespace.name).
 */
import type { KernelMemory } from './kmem.js';
import type { Vmcoreinfo } from './vmcoreinfo.js';

/** __NEW_UTS_LEN + 1 (include/uapi/linux/utsname.h); a fixed ABI size, not in VMCOREINFO. */
export const UTS_FIELD_LEN = 65;

export interface Utsname {
  readonly sysname: string;
  readonly nodename: string;
  readonly release: string;
  readonly version: string;
  readonly machine: string;
  readonly domainname: string;
}

export function utsnameAddress(info: Vmcoreinfo): bigint {
  return info.symbol('init_uts_ns') + BigInt(info.offset('uts_namespace.name'));
}

export function readUtsname(kmem: KernelMemory, info: Vmcoreinfo): Utsname {
  const r = kmem.struct(utsnameAddress(info), UTS_FIELD_LEN * 6, 'init_uts_ns.name');
  const f = (i: number): string => r.cstring(i * UTS_FIELD_LEN, UTS_FIELD_LEN);
  return { sysname: f(0), nodename: f(1), release: f(2), version: f(3), machine: f(4), domainname: f(5) };
}
