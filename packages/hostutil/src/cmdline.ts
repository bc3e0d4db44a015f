/** Edits to a guest kernel's command line, as recovery-VM options of backend plugins take them. */
export interface KernelCmdlineEdits {
  /** Replace the whole command line. */
  readonly set?: string;
  /** Remove parameters by key (`vicover.load`) or exact `key=value`. */
  readonly remove?: readonly string[];
  /** Add parameters (after removals); a `key=value` replaces an earlier parameter with that key. */
  readonly add?: readonly string[];
}

export function editKernelCmdline(cmdline: string, e: KernelCmdlineEdits | undefined): string {
  if (!e) return cmdline;
  let params = (e.set ?? cmdline).split(/\s+/).filter(Boolean);
  for (const r of e.remove ?? []) params = params.filter((p) => p !== r && p.split('=')[0] !== r);
  for (const a of e.add ?? []) {
    const key = a.split('=')[0];
    params = params.filter((p) => p.split('=')[0] !== key || !a.includes('='));
    params.push(a);
  }
  return params.join(' ');
}

/** The JSON Schema of KernelCmdlineEdits, for plugin option schemas. */
export function kernelCmdlineEditsSchema(description: string) {
  return {
    type: 'object',
    additionalProperties: false,
    description,
    properties: {
      set: { type: 'string', description: 'replace the whole kernel command line' },
      remove: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'parameters to drop, by key (vicover.load) or exact key=value' },
      add: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'parameters to add (a key=value replaces an earlier one with that key)' },
    },
  } as const;
}
