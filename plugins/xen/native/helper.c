/*
 * vicover-xen-helper — the Xen backend's window into a crashed domain's memory (docs/xen.md).
 *
 * Runs in dom0 as root, next to the Vicover daemon, and speaks a line protocol on stdin/stdout:
 *
 *   request   one text line: COMMAND ARG…
 *   response  "OK <n> <json>\n" followed by exactly n bytes of binary payload (n may be 0), or
 *             "ERR <ERRNAME> <message>\n"
 *
 * Commands
 *   version                 protocol and Xen version
 *   open DOMID              domain facts and its guest-physical RAM layout (PV: the p2m, rebuilt from
 *                           shared_info — the 3-level frame list or the linear p2m at p2m_vaddr in
 *                           the address space of p2m_cr3; PVH/HVM: gfns that Xen says are populated)
 *   read PFN COUNT FLAGS    COUNT pages from PFN (payload COUNT × 4096 bytes; pages that cannot be
 *                           mapped or were released read as zero). FLAGS bit 0: PV page-table pages
 *                           are canonicalised (machine frames in their entries become guest pfns,
 *                           Xen's own L4 slots are cleared) the way the migration stream does it,
 *                           so the dump reads like any x86-64 kdump. Mapping is batched
 *                           (xenforeignmemory_map), never one page at a time.
 *   find PFN COUNT HEX OFFS MAX
 *                           guest-physical addresses where the bytes HEX start at one of the page
 *                           offsets OFFS (e.g. 0,24) in COUNT pages from PFN, looked at in place
 *                           (mapped in batches, not copied or sent): a fast scan for a marker
 *   regs                    vCPU registers (PV: vcpu context; PVH/HVM: the HVM CPU save record)
 *   release PFN COUNT       XENMEM_decrease_reservation on the populated frames of the range,
 *                           with the domain's page count and Xen's free memory before and after
 *   stat                    the open domain's page count, state flags, Xen's free memory
 *   dominfo DOMID           the same for any domain (recovery domains), without opening it
 *   quit
 *
 * Reads and releases are bounded (at most MAX_BATCH pages per request). One domain per process.
 * Build: make (needs libxen-dev: xenctrl.h, xenforeignmemory.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xen/hvm/save.h>

#define PROTOCOL 1
#define PAGE 4096UL
#define PTES 512
#define MAX_BATCH 4096U          /* pages per read/release request (16 MiB) */
#define MAP_BATCH 1024U          /* frames per foreign-map / type query call */
#define INVALID_FRAME (~0ULL)
#define PTE_PRESENT 1ULL
#define PTE_ADDR 0x000ffffffffff000ULL
/* Linux marks non-RAM p2m entries with these bits (arch/x86/include/asm/xen/page.h). */
#define P2M_FOREIGN (1ULL << 63)
#define P2M_IDENTITY (1ULL << 62)
/* L4 slots Xen reserves in a 64-bit PV guest's top-level table (HYPERVISOR_VIRT_START..END). */
#define XEN_L4_FIRST 256
#define XEN_L4_LAST 271

/* Declared in libxenctrl's private header only; exported (VERS_4.17.0). */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);

static xc_interface *xch;
static xenforeignmemory_handle *fmem;

struct dom {
  int open;
  uint32_t domid;
  int translated;            /* PVH/HVM: gfn = pfn */
  uint64_t nr_pfns;          /* size of the pfn space we track */
  uint64_t *p2m;             /* PV: pfn -> mfn (INVALID_FRAME = not RAM) */
  uint8_t *populated;        /* per pfn: 1 = RAM (mappable), 0 = hole */
  uint8_t *released;         /* per pfn: 1 = given back (reads as zero) */
  struct { uint64_t mfn, pfn; } *m2p; /* PV: sorted by mfn */
  uint64_t m2p_len;
  unsigned vcpus;
  const char *p2m_source;
};
static struct dom D;


/* ── output ─────────────────────────────────────────────────────────────────────────────────── */

static void out_all(const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(1, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      exit(3); /* the daemon went away */
    }
    c += w;
    n -= (size_t)w;
  }
}

static char jbuf[1 << 20];
static size_t jlen;
static void jr(void) { jlen = 0; jbuf[0] = 0; }
static void jp(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(jbuf + jlen, sizeof(jbuf) - jlen, fmt, ap);
  va_end(ap);
  if (n > 0) jlen += (size_t)n < sizeof(jbuf) - jlen ? (size_t)n : sizeof(jbuf) - jlen - 1;
}

static void ok(size_t payload) {
  char head[64];
  int n = snprintf(head, sizeof head, "OK %zu ", payload);
  out_all(head, (size_t)n);
  out_all(jbuf, jlen);
  out_all("\n", 1);
}

static void err(const char *name, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (char *p = msg; *p; p++) if (*p == '\n') *p = ' ';
  char line[600];
  int n = snprintf(line, sizeof line, "ERR %s %s\n", name, msg);
  out_all(line, (size_t)n);
}

static const char *errname(int e) {
  switch (e) {
  case ESRCH: return "ESRCH";
  case EPERM: return "EPERM";
  case EACCES: return "EACCES";
  case EINVAL: return "EINVAL";
  case ENOMEM: return "ENOMEM";
  case ENOENT: return "ENOENT";
  case EBUSY: return "EBUSY";
  default: return "EIO";
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ── domain facts ───────────────────────────────────────────────────────────────────────────── */

static int dominfo(uint32_t domid, xc_dominfo_t *info) {
  int n = xc_domain_getinfo(xch, domid, 1, info);
  if (n != 1 || info->domid != domid) {
    errno = ESRCH;
    return -1;
  }
  return 0;
}

static int free_pages(uint64_t *out) {
  xc_physinfo_t pi;
  memset(&pi, 0, sizeof pi);
  if (xc_physinfo(xch, &pi) < 0) return -1;
  *out = pi.free_pages;
  return 0;
}

/* Map one frame read-only (page-table walks, shared_info). */
static void *map1(uint64_t frame) {
  xen_pfn_t f = (xen_pfn_t)frame;
  int e = 0;
  void *p = xenforeignmemory_map(fmem, D.domid, PROT_READ, 1, &f, &e);
  if (!p) return NULL;
  if (e) {
    xenforeignmemory_unmap(fmem, p, 1);
    errno = -e;
    return NULL;
  }
  return p;
}

/* Copy `n` frames into dst (n × PAGE bytes); frames that cannot be mapped become zero pages.
 * Returns the number of zero-filled frames, or -1 when the whole map call failed. */
static long copy_frames(const xen_pfn_t *frames, unsigned n, uint8_t *dst) {
  static int errs[MAP_BATCH];
  long missing = 0;
  for (unsigned off = 0; off < n; off += MAP_BATCH) {
    unsigned k = n - off < MAP_BATCH ? n - off : MAP_BATCH;
    void *p = xenforeignmemory_map(fmem, D.domid, PROT_READ, k, frames + off, errs);
    if (!p) return -1;
    for (unsigned i = 0; i < k; i++) {
      if (errs[i]) {
        memset(dst + (size_t)(off + i) * PAGE, 0, PAGE);
        missing++;
      } else {
        memcpy(dst + (size_t)(off + i) * PAGE, (uint8_t *)p + (size_t)i * PAGE, PAGE);
      }
    }
    xenforeignmemory_unmap(fmem, p, k);
  }
  return missing;
}

/* ── PV p2m ─────────────────────────────────────────────────────────────────────────────────── */

/* Walk a PV guest's (machine-frame) page tables: the mfn that maps `va` in the tables rooted at
 * l4mfn, or INVALID_FRAME. A tiny per-level cache keeps consecutive lookups cheap. */
static uint64_t pv_walk(uint64_t l4mfn, uint64_t va) {
  static uint64_t cached_mfn[4] = {INVALID_FRAME, INVALID_FRAME, INVALID_FRAME, INVALID_FRAME};
  static uint64_t *cached_page[4];
  uint64_t mfn = l4mfn;
  for (int level = 3; level >= 0; level--) {
    if (cached_mfn[level] != mfn) {
      if (cached_page[level]) xenforeignmemory_unmap(fmem, cached_page[level], 1);
      cached_page[level] = map1(mfn);
      cached_mfn[level] = cached_page[level] ? mfn : INVALID_FRAME;
      if (!cached_page[level]) return INVALID_FRAME;
    }
    uint64_t e = cached_page[level][(va >> (12 + 9 * level)) & 511];
    if (!(e & PTE_PRESENT)) return INVALID_FRAME;
    mfn = (e & PTE_ADDR) >> 12;
  }
  return mfn;
}

static int m2p_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t m2p(uint64_t mfn) {
  uint64_t lo = 0, hi = D.m2p_len;
  while (lo < hi) {
    uint64_t mid = (lo + hi) / 2;
    if (D.m2p[mid].mfn < mfn) lo = mid + 1;
    else hi = mid;
  }
  return lo < D.m2p_len && D.m2p[lo].mfn == mfn ? D.m2p[lo].pfn : INVALID_FRAME;
}

static int build_pv_p2m(const xc_dominfo_t *info) {
  shared_info_t *si = map1(info->shared_info_frame);
  if (!si) return -1;
  uint64_t max_pfn = si->arch.max_pfn;
  uint64_t fll = si->arch.pfn_to_mfn_frame_list_list;
  uint64_t p2m_cr3 = si->arch.p2m_cr3, p2m_vaddr = si->arch.p2m_vaddr;
  xenforeignmemory_unmap(fmem, si, 1);
  if (max_pfn == 0 || max_pfn > (1ULL << 40)) {
    errno = EINVAL;
    return -1;
  }
  uint64_t npages = (max_pfn + PTES - 1) / PTES; /* p2m pages */
  xen_pfn_t *frames = calloc(npages, sizeof *frames);
  if (!frames) return -1;
  if (fll != 0 && fll != ~0ULL) {
    /* The 3-level tree: frame-list-list → frame lists → p2m pages. */
    D.p2m_source = "frame-list";
    uint64_t *top = map1(fll);
    if (!top) return -1;
    uint64_t nmid = (npages + PTES - 1) / PTES;
    for (uint64_t m = 0; m < nmid; m++) {
      uint64_t *mid = map1(top[m]);
      if (!mid) continue;
      for (uint64_t i = 0; i < PTES && m * PTES + i < npages; i++) frames[m * PTES + i] = mid[i];
      xenforeignmemory_unmap(fmem, mid, 1);
    }
    xenforeignmemory_unmap(fmem, top, 1);
  } else if (p2m_cr3) {
    /* The linear p2m list (Linux ≥ 4.14 keeps only this when Xen supports it). */
    D.p2m_source = "linear";
    uint64_t l4 = xen_cr3_to_pfn(p2m_cr3);
    for (uint64_t i = 0; i < npages; i++) frames[i] = pv_walk(l4, p2m_vaddr + i * PAGE);
  } else {
    errno = ENOENT;
    free(frames);
    return -1;
  }
  uint8_t *raw = malloc(npages * PAGE);
  if (!raw) return -1;
  for (uint64_t i = 0; i < npages; i++) if (frames[i] == INVALID_FRAME) frames[i] = 0; /* maps to an error → zero */
  if (copy_frames(frames, (unsigned)npages, raw) < 0) return -1;
  free(frames);
  D.nr_pfns = max_pfn;
  D.p2m = (uint64_t *)raw; /* npages × 512 ≥ max_pfn entries */
  D.populated = calloc(max_pfn, 1);
  D.released = calloc(max_pfn, 1);
  D.m2p = calloc(max_pfn, sizeof *D.m2p);
  if (!D.populated || !D.released || !D.m2p) return -1;
  uint64_t max_mfn = 0;
  unsigned long maxram = 0;
  if (xc_maximum_ram_page(xch, &maxram) == 0) max_mfn = maxram;
  for (uint64_t pfn = 0; pfn < max_pfn; pfn++) {
    uint64_t mfn = D.p2m[pfn];
    if (mfn == INVALID_FRAME || (mfn & (P2M_FOREIGN | P2M_IDENTITY)) || (max_mfn && mfn > max_mfn)) {
      D.p2m[pfn] = INVALID_FRAME;
      continue;
    }
    D.populated[pfn] = 1;
    D.m2p[D.m2p_len].mfn = mfn;
    D.m2p[D.m2p_len].pfn = pfn;
    D.m2p_len++;
  }
  qsort(D.m2p, D.m2p_len, sizeof *D.m2p, m2p_cmp);
  return 0;
}

/* PVH/HVM: which gfns in [0, max_gpfn] are populated, asked with the page-type query (one domctl per
 * 1024 gfns, no mapping). */
static int scan_translated(void) {
  xen_pfn_t max_gpfn = 0;
  if (xc_domain_maximum_gpfn(xch, D.domid, &max_gpfn) < 0) return -1;
  uint64_t n = (uint64_t)max_gpfn + 1;
  D.nr_pfns = n;
  D.populated = calloc(n, 1);
  D.released = calloc(n, 1);
  if (!D.populated || !D.released) return -1;
  static xen_pfn_t arr[MAP_BATCH];
  for (uint64_t s = 0; s < n; s += MAP_BATCH) {
    unsigned k = n - s < MAP_BATCH ? (unsigned)(n - s) : MAP_BATCH;
    for (unsigned i = 0; i < k; i++) arr[i] = s + i;
    if (xc_get_pfn_type_batch(xch, D.domid, k, arr) < 0) return -1;
    for (unsigned i = 0; i < k; i++) {
      uint32_t t = (uint32_t)(arr[i] & XEN_DOMCTL_PFINFO_LTAB_MASK);
      D.populated[s + i] = t != XEN_DOMCTL_PFINFO_XTAB && t != XEN_DOMCTL_PFINFO_BROKEN;
    }
  }
  D.p2m_source = "translated";
  return 0;
}

static void close_dom(void) {
  free(D.p2m);
  free(D.populated);
  free(D.released);
  free(D.m2p);
  memset(&D, 0, sizeof D);
}

static void cmd_open(uint32_t domid) {
  xc_dominfo_t info;
  close_dom();
  double t0 = now();
  if (dominfo(domid, &info) < 0) return err("ESRCH", "no domain %u", domid);
  D.domid = domid;
  D.translated = info.hvm;
  D.vcpus = info.max_vcpu_id + 1;
  int rc = D.translated ? scan_translated() : build_pv_p2m(&info);
  if (rc < 0) {
    int e = errno;
    close_dom();
    return err(errname(e), "cannot build the memory layout of domain %u: %s", domid, strerror(e));
  }
  D.open = 1;
  double t1 = now();
  uint64_t fp = 0;
  free_pages(&fp);
  jr();
  jp("{\"domid\":%u,\"translated\":%s,\"vcpus\":%u,\"nrPages\":%lu,\"maxMemKiB\":%lu,"
     "\"sharedInfoFrame\":%lu,\"crashed\":%d,\"shutdown\":%d,\"shutdownReason\":%u,\"dying\":%d,\"paused\":%d,"
     "\"freePages\":%" PRIu64 ",\"layoutSource\":\"%s\",\"layoutSeconds\":%.4f,\"pfns\":%" PRIu64 ",\"ranges\":[",
     domid, D.translated ? "true" : "false", D.vcpus, info.nr_pages, info.max_memkb, info.shared_info_frame,
     info.crashed, info.shutdown, info.shutdown_reason, info.dying, info.paused, fp, D.p2m_source, t1 - t0,
     D.nr_pfns);
  int first = 1;
  uint64_t populated = 0;
  for (uint64_t p = 0; p < D.nr_pfns;) {
    if (!D.populated[p]) { p++; continue; }
    uint64_t q = p;
    while (q < D.nr_pfns && D.populated[q]) q++;
    jp("%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", p, q);
    populated += q - p;
    first = 0;
    p = q;
  }
  jp("],\"populated\":%" PRIu64 "}", populated);
  ok(0);
}

/* ── reading ────────────────────────────────────────────────────────────────────────────────── */

static uint8_t *rbuf;

/* Replace machine frames in a PV page-table page by guest pfns (present entries only, as Linux's
 * pte_mfn_to_pfn does); entries naming frames outside the guest and Xen's L4 slots are cleared. */
static unsigned canonicalise(uint64_t *pt, uint32_t type) {
  unsigned cleared = 0;
  for (unsigned i = 0; i < PTES; i++) {
    uint64_t e = pt[i];
    if (type == XEN_DOMCTL_PFINFO_L4TAB && i >= XEN_L4_FIRST && i <= XEN_L4_LAST) {
      pt[i] = 0;
      continue;
    }
    if (!(e & PTE_PRESENT)) continue;
    uint64_t pfn = m2p((e & PTE_ADDR) >> 12);
    if (pfn == INVALID_FRAME) {
      pt[i] = 0;
      cleared++;
      continue;
    }
    pt[i] = (e & ~PTE_ADDR) | (pfn << 12);
  }
  return cleared;
}

static void cmd_read(uint64_t pfn, unsigned count, unsigned flags) {
  if (!D.open) return err("EINVAL", "no domain is open");
  if (count == 0 || count > MAX_BATCH) return err("EINVAL", "count must be 1..%u", MAX_BATCH);
  static xen_pfn_t frames[MAX_BATCH], types[MAX_BATCH];
  static int errs[MAX_BATCH];
  static unsigned idx[MAX_BATCH];
  if (!rbuf) rbuf = malloc((size_t)MAX_BATCH * PAGE);
  if (!rbuf) return err("ENOMEM", "out of memory");
  unsigned k = 0;
  for (unsigned i = 0; i < count; i++) {
    uint64_t p = pfn + i;
    if (p >= D.nr_pfns || !D.populated[p] || D.released[p]) continue;
    frames[k] = D.translated ? p : D.p2m[p];
    idx[k++] = i;
  }
  long zero = count - k, pts = 0, cleared = 0;
  memset(rbuf, 0, (size_t)count * PAGE);
  for (unsigned off = 0; off < k; off += MAP_BATCH) {
    unsigned n = k - off < MAP_BATCH ? k - off : MAP_BATCH;
    uint8_t *p = xenforeignmemory_map(fmem, D.domid, PROT_READ, n, frames + off, errs);
    if (!p) return err(errname(errno), "xenforeignmemory_map of %u frames failed: %s", n, strerror(errno));
    for (unsigned i = 0; i < n; i++) {
      if (errs[i]) { zero++; continue; }
      memcpy(rbuf + (size_t)idx[off + i] * PAGE, p + (size_t)i * PAGE, PAGE);
    }
    xenforeignmemory_unmap(fmem, p, n);
    if ((flags & 1) && !D.translated) {
      memcpy(types, frames + off, n * sizeof *types);
      if (xc_get_pfn_type_batch(xch, D.domid, n, types) < 0)
        return err(errname(errno), "page-type query failed: %s", strerror(errno));
      for (unsigned i = 0; i < n; i++) {
        uint32_t t = (uint32_t)(types[i] & XEN_DOMCTL_PFINFO_LTABTYPE_MASK);
        if (errs[i] || t < XEN_DOMCTL_PFINFO_L1TAB || t > XEN_DOMCTL_PFINFO_L4TAB) continue;
        cleared += canonicalise((uint64_t *)(rbuf + (size_t)idx[off + i] * PAGE), t);
        pts++;
      }
    }
  }
  jr();
  jp("{\"zeroFilled\":%ld,\"pageTables\":%ld,\"clearedEntries\":%ld}", zero, pts, cleared);
  ok((size_t)count * PAGE);
  out_all(rbuf, (size_t)count * PAGE);
}

/* find PFN COUNT HEX OFFS MAX: where the bytes HEX (hex, 1..32 bytes) start at one of the page
 * offsets OFFS (comma-separated, at most 8) of the COUNT pages from PFN — looked at where they are
 * mapped, never copied or sent (a scan for a marker such as VMCOREINFO's). Holes and released pages
 * are skipped. Answers the guest-physical addresses in order, at most MAX (≤ 1024) of them, and
 * whether there were more. */
#define MAX_FIND_PAGES 65536U
#define MAX_FIND_HITS 1024U
static void cmd_find(const char *line) {
  char cmd[16], hex[80], offs[128];
  unsigned long long pfn = 0, count = 0, max = 0;
  if (sscanf(line, "%15s %llu %llu %79s %127s %llu", cmd, &pfn, &count, hex, offs, &max) != 6)
    return err("EINVAL", "usage: find PFN COUNT HEX OFFS MAX");
  if (!D.open) return err("EINVAL", "no domain is open");
  if (count == 0 || count > MAX_FIND_PAGES) return err("EINVAL", "count must be 1..%u", MAX_FIND_PAGES);
  if (max == 0 || max > MAX_FIND_HITS) return err("EINVAL", "max must be 1..%u", MAX_FIND_HITS);
  size_t hl = strlen(hex), nl = hl / 2;
  uint8_t needle[32];
  if (hl % 2 || nl == 0 || nl > sizeof needle) return err("EINVAL", "the needle must be 1..32 bytes in hex");
  for (size_t i = 0; i < nl; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return err("EINVAL", "bad hex in the needle");
    needle[i] = (uint8_t)v;
  }
  unsigned off[8], no = 0;
  for (char *s = offs, *e; *s && no < 8; s = *e ? e + 1 : e) {
    unsigned long o = strtoul(s, &e, 10);
    if (e == s || o + nl > PAGE) return err("EINVAL", "bad page offset list %s", offs);
    off[no++] = (unsigned)o;
  }
  if (no == 0) return err("EINVAL", "no page offsets");
  static xen_pfn_t frames[MAP_BATCH];
  static uint64_t pfns[MAP_BATCH];
  static uint64_t hits[MAX_FIND_HITS];
  static int errs[MAP_BATCH];
  unsigned nh = 0;
  int more = 0;
  long pages = 0, unmapped = 0;
  uint64_t p = pfn, end = pfn + count;
  while (p < end && !more) {
    unsigned k = 0;
    for (; p < end && k < MAP_BATCH; p++) {
      if (p >= D.nr_pfns || !D.populated[p] || D.released[p]) continue;
      frames[k] = D.translated ? p : D.p2m[p];
      pfns[k++] = p;
    }
    if (!k) continue;
    uint8_t *m = xenforeignmemory_map(fmem, D.domid, PROT_READ, k, frames, errs);
    if (!m) return err(errname(errno), "xenforeignmemory_map of %u frames failed: %s", k, strerror(errno));
    for (unsigned i = 0; i < k && !more; i++) {
      if (errs[i]) { unmapped++; continue; }
      const uint8_t *pg = m + (size_t)i * PAGE;
      pages++;
      for (unsigned j = 0; j < no; j++) {
        if (pg[off[j]] != needle[0] || memcmp(pg + off[j], needle, nl)) continue;
        if (nh == max) { more = 1; break; }
        hits[nh++] = pfns[i] * PAGE + off[j];
      }
    }
    xenforeignmemory_unmap(fmem, m, k);
  }
  jr();
  jp("{\"pages\":%ld,\"unmapped\":%ld,\"truncated\":%s,\"hits\":[", pages, unmapped, more ? "true" : "false");
  for (unsigned i = 0; i < nh; i++) jp("%s%" PRIu64, i ? "," : "", hits[i]);
  jp("]}");
  ok(0);
}

/* ── registers ──────────────────────────────────────────────────────────────────────────────── */

#define R(name, v) jp("%s\"%s\":\"0x%" PRIx64 "\"", n++ ? "," : "", name, (uint64_t)(v))

static void cmd_regs(void) {
  if (!D.open) return err("EINVAL", "no domain is open");
  jr();
  jp("{\"vcpus\":[");
  for (unsigned v = 0; v < D.vcpus; v++) {
    xc_vcpuinfo_t vi;
    memset(&vi, 0, sizeof vi);
    int online = xc_vcpu_getinfo(xch, D.domid, v, &vi) == 0 && vi.online;
    jp("%s{\"id\":%u,\"online\":%s", v ? "," : "", v, online ? "true" : "false");
    if (!online) {
      /* Taken down before the crash (Linux stops the other vCPUs on panic): no state to read. */
      jp("}");
      continue;
    }
    int n = 0;
    if (D.translated) {
      struct hvm_hw_cpu c;
      memset(&c, 0, sizeof c);
      if (xc_domain_hvm_getcontext_partial(xch, D.domid, HVM_SAVE_CODE(CPU), v, &c, sizeof c) < 0) {
        jp(",\"error\":\"%s\"}", strerror(errno));
        continue;
      }
      jp(",\"source\":\"hvm-cpu-record\",\"regs\":{");
      R("r15", c.r15); R("r14", c.r14); R("r13", c.r13); R("r12", c.r12); R("rbp", c.rbp); R("rbx", c.rbx);
      R("r11", c.r11); R("r10", c.r10); R("r9", c.r9); R("r8", c.r8); R("rax", c.rax); R("rcx", c.rcx);
      R("rdx", c.rdx); R("rsi", c.rsi); R("rdi", c.rdi); R("rip", c.rip); R("cs", c.cs_sel);
      R("eflags", c.rflags); R("rsp", c.rsp); R("ss", c.ss_sel); R("fs_base", c.fs_base); R("gs_base", c.gs_base);
      R("ds", c.ds_sel); R("es", c.es_sel); R("fs", c.fs_sel); R("gs", c.gs_sel);
      jp("},\"cr3\":\"0x%" PRIx64 "\",\"cr0\":\"0x%" PRIx64 "\",\"cr4\":\"0x%" PRIx64 "\",\"shadowGsBase\":\"0x%" PRIx64 "\"}",
         c.cr3, c.cr0, c.cr4, c.shadow_gs);
    } else {
      vcpu_guest_context_any_t ctx;
      memset(&ctx, 0, sizeof ctx);
      if (xc_vcpu_getcontext(xch, D.domid, v, &ctx) < 0) {
        jp(",\"error\":\"%s\"}", strerror(errno));
        continue;
      }
      const struct cpu_user_regs *u = &ctx.c.user_regs;
      int kernel = (ctx.c.flags & VGCF_in_kernel) != 0;
      jp(",\"source\":\"pv-vcpu-context\",\"regs\":{");
      R("r15", u->r15); R("r14", u->r14); R("r13", u->r13); R("r12", u->r12); R("rbp", u->rbp); R("rbx", u->rbx);
      R("r11", u->r11); R("r10", u->r10); R("r9", u->r9); R("r8", u->r8); R("rax", u->rax); R("rcx", u->rcx);
      R("rdx", u->rdx); R("rsi", u->rsi); R("rdi", u->rdi); R("rip", u->rip); R("cs", u->cs);
      R("eflags", u->rflags); R("rsp", u->rsp); R("ss", u->ss);
      R("fs_base", ctx.c.fs_base); R("gs_base", kernel ? ctx.c.gs_base_kernel : ctx.c.gs_base_user);
      R("ds", u->ds); R("es", u->es); R("fs", u->fs); R("gs", u->gs);
      uint64_t cr3mfn = xen_cr3_to_pfn(ctx.c.ctrlreg[3]);
      uint64_t cr3pfn = m2p(cr3mfn);
      jp("},\"kernelMode\":%s,\"cr3Mfn\":\"0x%" PRIx64 "\",\"cr3\":\"0x%" PRIx64 "\"}", kernel ? "true" : "false", cr3mfn,
         cr3pfn == INVALID_FRAME ? 0 : cr3pfn << 12);
    }
  }
  jp("]}");
  ok(0);
}

/* ── release ────────────────────────────────────────────────────────────────────────────────── */

static void cmd_release(uint64_t pfn, unsigned count) {
  if (!D.open) return err("EINVAL", "no domain is open");
  if (count == 0 || count > MAX_BATCH) return err("EINVAL", "count must be 1..%u", MAX_BATCH);
  xc_dominfo_t before, after;
  uint64_t fb = 0, fa = 0;
  if (dominfo(D.domid, &before) < 0 || free_pages(&fb) < 0) return err("ESRCH", "domain %u is gone", D.domid);
  static xen_pfn_t frames[MAX_BATCH];
  static uint64_t pfns[MAX_BATCH];
  unsigned k = 0;
  for (unsigned i = 0; i < count; i++) {
    uint64_t p = pfn + i;
    if (p >= D.nr_pfns || !D.populated[p] || D.released[p]) continue;
    frames[k] = D.translated ? p : D.p2m[p];
    pfns[k++] = p;
  }
  double t0 = now();
  unsigned released = 0, failed = 0;
  /* XENMEM_decrease_reservation returns how many frames it released before the first it could not;
   * _exact would turn a partial result into -1 and lose that count, so the plain call is used and a
   * frame the domain no longer owns is skipped, not fatal. */
  for (unsigned i = 0; i < k;) {
    int done = xc_domain_decrease_reservation(xch, D.domid, k - i, 0, frames + i);
    if (done < 0) {
      if (errno == ESRCH) break;
      done = 0;
    }
    for (int j = 0; j < done; j++) D.released[pfns[i + j]] = 1;
    released += (unsigned)done;
    i += (unsigned)done;
    if (i < k) {
      failed++;
      D.released[pfns[i]] = 1; /* not ours any more either way: reads of it return zero */
      i++;
    }
  }
  double t1 = now();
  if (dominfo(D.domid, &after) < 0) memset(&after, 0, sizeof after);
  free_pages(&fa);
  jr();
  jp("{\"requested\":%u,\"frames\":%u,\"released\":%u,\"failed\":%u,\"seconds\":%.4f,"
     "\"nrPagesBefore\":%lu,\"nrPagesAfter\":%lu,\"freePagesBefore\":%" PRIu64 ",\"freePagesAfter\":%" PRIu64 "}",
     count, k, released, failed, t1 - t0, before.nr_pages, after.nr_pages, fb, fa);
  ok(0);
}

static void cmd_dominfo(uint32_t domid) {
  xc_dominfo_t info;
  uint64_t fp = 0;
  if (dominfo(domid, &info) < 0) return err("ESRCH", "domain %u is gone", domid);
  free_pages(&fp);
  jr();
  jp("{\"domid\":%u,\"nrPages\":%lu,\"maxMemKiB\":%lu,\"crashed\":%d,\"shutdown\":%d,\"shutdownReason\":%u,"
     "\"dying\":%d,\"paused\":%d,\"hvm\":%d,\"freePages\":%" PRIu64 "}",
     domid, info.nr_pages, info.max_memkb, info.crashed, info.shutdown, info.shutdown_reason, info.dying, info.paused, info.hvm, fp);
  ok(0);
}

static void cmd_stat(void) {
  if (!D.open) return err("EINVAL", "no domain is open");
  cmd_dominfo(D.domid);
}

static void cmd_version(void) {
  xen_extraversion_t extra;
  int v = xc_version(xch, XENVER_version, NULL);
  memset(extra, 0, sizeof extra);
  xc_version(xch, XENVER_extraversion, &extra);
  jr();
  jp("{\"helper\":\"vicover-xen-helper\",\"protocol\":%d,\"xen\":\"%d.%d%s\",\"maxBatch\":%u}", PROTOCOL, v >> 16, v & 0xffff,
     extra, MAX_BATCH);
  ok(0);
}

int main(void) {
  xch = xc_interface_open(NULL, NULL, 0);
  fmem = xenforeignmemory_open(NULL, 0);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    char cmd[32] = "";
    unsigned long long a = 0, b = 0, c = 0;
    int n = sscanf(line, "%31s %llu %llu %llu", cmd, &a, &b, &c);
    if (n < 1) continue;
    if (!xch || !fmem) {
      if (!strcmp(cmd, "quit")) break;
      err("EACCES", "cannot open the Xen control interfaces (%s): run in dom0 as root with xenfs mounted",
          !xch ? "xc_interface_open" : "xenforeignmemory_open");
      continue;
    }
    if (!strcmp(cmd, "version")) cmd_version();
    else if (!strcmp(cmd, "open") && n >= 2) cmd_open((uint32_t)a);
    else if (!strcmp(cmd, "read") && n >= 3) cmd_read(a, (unsigned)b, n >= 4 ? (unsigned)c : 0);
    else if (!strcmp(cmd, "find")) cmd_find(line);
    else if (!strcmp(cmd, "regs")) cmd_regs();
    else if (!strcmp(cmd, "release") && n >= 3) cmd_release(a, (unsigned)b);
    else if (!strcmp(cmd, "stat")) cmd_stat();
    else if (!strcmp(cmd, "dominfo") && n >= 2) cmd_dominfo((uint32_t)a);
    else if (!strcmp(cmd, "quit")) break;
    else err("EINVAL", "unknown or incomplete command: %s", line);
  }
  free(line);
  return 0;
}
