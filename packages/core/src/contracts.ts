/**
 * The contracts between the core and its plugins: what a backend provides, what a crash looks like,
 * what a page set is. The core knows no hypervisor and no guest OS; these shapes are what every
 * backend (a hypervisor, the simulated host) and every guest-OS plugin agree on.
 */
import type { ElfNote, MemorySource, PhysRange } from './memory.js';
import type { DumpFs } from '@vicover/dumpfmt';

/** A VM a backend manages. `id` is unique within the backend; `name` is for people and file names. */
export interface VmRef {
  readonly id: string;
  readonly name: string;
  /** Guest RAM size in bytes (the host-memory budget of a crash is this plus a stated margin). */
  readonly memoryBytes: number;
}

/** A crash as a backend reports it. */
export interface CrashEvent {
  readonly vm: VmRef;
  /** Wall-clock time of the crash as the backend saw it (ms since the epoch). */
  readonly at: number;
  /** Short text: `GUEST_PANICKED (pause)`, `domain state c`, … */
  readonly reason: string;
}

/** What a backend hands the core right after a crash, before anything else runs. */
export interface CaptureResult {
  /** Per-CPU register notes (NT_PRSTATUS) for the dump, already encoded for the guest's architecture. */
  readonly cpuNotes: readonly ElfNote[];
  /** Anything the backend wants in the report (e.g. how the CPU state was read). */
  readonly info?: Record<string, unknown>;
}

/** Opaque handle to a VM the backend started (a recovery VM). */
export interface VmHandle {
  readonly id: string;
  readonly name: string;
}

/** How to start a VM again: the backend's own description, opaque to the core; strategies may adjust it. */
export type VmDefinition = Readonly<Record<string, unknown>>;

export interface StartVmOptions {
  readonly name: string;
  /** Memory the VM starts with (bytes). */
  readonly memoryBytes: number;
  /** Memory it may grow to (bytes). */
  readonly maxMemoryBytes: number;
  /** Per-VM logger bindings, event sink for serial lines etc. are up to the backend. */
  readonly signal?: AbortSignal;
}

export interface IoStats {
  /** Cumulative bytes since the VM started. */
  readonly readBytes: number;
  readonly writeBytes: number;
  readonly readOps: number;
  readonly writeOps: number;
}

export interface IoLimits {
  /** Bytes per second (read + write), or undefined for no limit. */
  readonly bps?: number;
  readonly iops?: number;
}

/**
 * A backend: the hypervisor side of a crash (each hypervisor, and the simulated host, is a plugin). One contract for all;
 * methods a hypervisor cannot support throw VcvError VCV_ERR_BACKEND with a reason.
 */
export interface Backend {
  readonly name: string;
  /** Begin watching the VMs this backend manages; call `onCrash` for each crash. */
  start(ctx: BackendContext): Promise<void>;
  /** Stop watching (no more crash events). Running recovery VMs are left alone. */
  stop(): Promise<void>;
  /** VMs currently managed (for `vicover status` and the daemon's start-up log). */
  list(): Promise<readonly VmRef[]>;

  // ── the crashed VM ────────────────────────────────────────────────────────
  /** Read what is needed from the crashed VM's process (CPU state) and free what is not (disk locks). */
  capture(vm: VmRef): Promise<CaptureResult>;
  /** The crashed VM's memory. Stays readable after capture(); released ranges read as zero. */
  openMemory(vm: VmRef): Promise<MemorySource>;
  /**
   * Give the host memory behind a durably dumped range back. Resolves with the bytes actually freed
   * (measured, not assumed). Never called before the range's pages are durable.
   */
  release(vm: VmRef, range: PhysRange): Promise<{ readonly freedBytes: number }>;
  /** Whether release() frees memory at once for this VM (false where the hypervisor frees a crashed VM's memory only when it is destroyed). */
  releasesImmediately(vm: VmRef): boolean;
  /** Host memory the crashed VM still holds (bytes), measured. */
  allocatedBytes(vm: VmRef): Promise<number>;
  /** Get rid of the crashed VM and all its memory. */
  destroy(vm: VmRef): Promise<void>;
  /** How to start this VM again. */
  definitionOf(vm: VmRef): Promise<VmDefinition>;
  /**
   * Where the dump bytes go, when the backend must decide (optional). The simulated host routes them
   * through its modelled disk, or — when a dump of a simulated TiB guest would not fit on the real disk
   * — into a counting sink paced at the modelled bandwidth. `description` goes into the report.
   */
  dumpTarget?(vm: VmRef, info: { readonly path: string; readonly estimatedBytes: number }): Promise<{ readonly fs: DumpFs; readonly description: string } | null>;
  /** Find a crashed VM left over from an interrupted session (daemon restart), or null if it is gone. */
  reattach?(vm: VmRef): Promise<boolean>;

  // ── VMs the backend starts (recovery) ─────────────────────────────────────
  startVm(def: VmDefinition, opts: StartVmOptions): Promise<VmHandle>;
  /** Grow (or shrink) a running VM's memory. Granularity: `growGranularityBytes`. */
  resizeVm(vm: VmHandle, memoryBytes: number): Promise<void>;
  /** Limit a VM's disk I/O (null: no limit). */
  throttleVm(vm: VmHandle, limits: IoLimits | null): Promise<void>;
  /** Cumulative disk I/O of a VM. */
  vmIoStats(vm: VmHandle): Promise<IoStats>;
  /** Host memory a started VM holds (bytes), measured. */
  vmAllocatedBytes(vm: VmHandle): Promise<number>;
  stopVm(vm: VmHandle): Promise<void>;
  /**
   * Follow a started VM's console (serial) output line by line, for health checks that wait for a
   * line. Returns a function that stops following. Optional: backends without a console omit it.
   */
  watchConsole?(vm: VmHandle, onLine: (line: string) => void): () => void;
  /** Where a started VM's services are reachable from the host, e.g. forwarded ports. Optional. */
  endpointsOf?(vm: VmHandle): Readonly<Record<string, string>>;
  /**
   * Facts about a started VM worth a place in the crash report (`recovery.backend`), e.g. that the
   * toolstack restarted it and how often. Plain JSON values. Optional.
   */
  vmInfo?(vm: VmHandle): Readonly<Record<string, unknown>>;
  /** Smallest step the backend can grow a VM by (bytes); chunks are aligned to it. */
  readonly growGranularityBytes: number;
  /** True when this backend is a simulation (every output says so). */
  readonly simulated?: boolean;
}

export interface BackendContext {
  onCrash(event: CrashEvent): void;
}

// ── pages ───────────────────────────────────────────────────────────────────

/** A pfn bitmap (kdump bit order). Structurally the Bitmap of @vicover/dumpfmt. */
export interface PfnBitmap {
  readonly size: number;
  get(pfn: number): boolean;
  set(pfn: number): void;
  clear(pfn: number): void;
  count(start?: number, end?: number): number;
}

/**
 * The set of pages a dump will hold. `selectPages` taps receive it and narrow `dump` (never widen it
 * beyond `ram`), adding what they excluded to `excluded` by class. Never arrays of pages: bitmaps.
 */
export interface PageSet {
  readonly maxPfn: number;
  /** pfns that are RAM in the memory source. */
  readonly ram: PfnBitmap;
  /** pfns to dump (⊆ ram). */
  readonly dump: PfnBitmap;
  /** Pages excluded per class (`free`, `cache`, `privateCache`, `user`, `offline`, …). Zero pages are
   * found by content at write time and added to `zero` by the core. */
  readonly excluded: Record<string, number>;
  /** Drop pages whose content is all zero (found while writing). */
  excludeZero: boolean;
  /** The dump level the selection corresponds to (makedumpfile semantics; 0 = everything). */
  dumpLevel: number;
  /** Set by a filter that gave up: the dump is then a full dump, and this says why. */
  fallback?: { readonly plugin: string; readonly code: string; readonly reason: string };
  /** Extra per-plugin figures for the report (small JSON values only). */
  readonly notes: Record<string, unknown>;
}
