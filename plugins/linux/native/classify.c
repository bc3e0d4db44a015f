/*
 * vicover-classify.node: the struct-page decode of the Linux page filter, in C (Node-API addon;
 * loaded by src/native-classify.ts, called from src/classify.ts's Classifier.classifyBlock).
 *
 * It is the JavaScript hot loop `classifyRun` (src/classify.ts) line for line: same parameters (one
 * Int32Array, P_*), same figures (one Float64Array, S_*), same exclusion bitmap, same answers. The
 * JavaScript loop is only fast once V8 has optimised it; a short-lived `vicover dump` spends most of its
 * classification in the interpreter, or in the warm-up that avoids that. This has nothing to warm up.
 *
 *   classifyRun(P, bytes, excluded, st, blockPfn, nPages, from, to, maxPfn)
 *
 *   P: Int32Array (P_COUNT parameters); bytes: Uint8Array holding `nPages` struct pages from offset 0,
 *   the first being pfn `blockPfn`; excluded: Uint8Array bitmap of maxPfn bits (kdump bit order);
 *   st: Float64Array (S_COUNT figures, added to). Classifies RAM pfns [from, to).
 *
 * The struct pages are guest memory and may hold anything: every value read from them only steers
 * which of the checks below apply, and every index is bounded by the checks made before the loop (the
 * window, the field offsets, the bitmap's length). Parameters that break those bounds throw a
 * RangeError before anything is read or written.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <string.h>

enum {
  P_W, P_FLAGS, P_MAPPING, P_MAPCOUNT, P_REFCOUNT, P_PRIVATE, P_HEAD, P_LEVEL, P_DROP_RZ,
  P_HEAD_LO, P_HEAD_HI, P_LRU_LO, P_LRU_HI, P_SWC_LO, P_SWC_HI, P_HAS_SWB, P_SWB_LO, P_SWB_HI,
  P_PRIV_LO, P_PRIV_HI, P_SLAB_LO, P_SLAB_HI, P_HWP_LO, P_HWP_HI, P_HAS_PGBUDDY, P_PGBUDDY_LO,
  P_PGBUDDY_HI, P_HAS_PGHUGE, P_PGHUGE_LO, P_PGHUGE_HI, P_HAS_BUDDY_T, P_BUDDY_T, P_HAS_OFFLINE_T,
  P_OFFLINE_T, P_HAS_SLAB_T, P_SLAB_T, P_HAS_HUGE_T, P_HUGE_T, P_HAS_UNACC_T, P_UNACC_T,
  P_HUGE_DTOR, P_ORDERS, P_CO_KIND, P_CO_OFF, P_DTOR_OFF, P_SIZE, P_COUNT
};
enum {
  S_CACHE, S_PRIV, S_USER, S_FREE, S_OFFLINE, S_HWPOISON, S_RZ_EXTRA, S_RZ_TAIL, S_RZ_TYPED,
  S_BAD_BUDDY, S_BAD_COMPOUND, S_SKIP_UNTIL, S_READ, S_COUNT
};

#define DL_EXCLUDE_CACHE 2
#define DL_EXCLUDE_CACHE_PRI 4
#define DL_EXCLUDE_USER_DATA 8
#define DL_EXCLUDE_FREE 16
#define PGMM_CACHED 512

#define THROW(msg)                            \
  do {                                        \
    napi_throw_range_error(env, NULL, (msg)); \
    return NULL;                              \
  } while (0)
#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "vicover-classify: bad argument");  \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static int typed_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is;
  napi_typedarray_type t;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &t, len, data, NULL, NULL) != napi_ok) return 0;
  return t == want;
}

/* A whole number in [lo, hi] from a JavaScript number; 0 when it is not one. */
static int whole(napi_env env, napi_value v, double lo, double hi, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

static inline int32_t rd32(const uint8_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Set bits [start, end) of a kdump-order bitmap (end ≤ its bits, checked by the caller). */
static void set_bits(uint8_t *bits, int64_t start, int64_t end) {
  int64_t p = start;
  while (p < end && (p & 7) != 0) {
    bits[p >> 3] |= (uint8_t)(1u << (p & 7));
    p++;
  }
  int64_t full = end - (end & 7);
  if (p < full) {
    memset(bits + (p >> 3), 0xff, (size_t)((full - p) >> 3));
    p = full;
  }
  while (p < end) {
    bits[p >> 3] |= (uint8_t)(1u << (p & 7));
    p++;
  }
}

static napi_value classify_run(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) THROW("classifyRun: 9 arguments expected");
  int32_t *P;
  uint8_t *bytes, *excluded;
  double *st;
  size_t pLen, bytesLen, exLen, stLen;
  if (!typed_array(env, argv[0], napi_int32_array, (void **)&P, &pLen) || pLen < P_COUNT) THROW("classifyRun: P must be an Int32Array of the parameters");
  if (!typed_array(env, argv[1], napi_uint8_array, (void **)&bytes, &bytesLen)) THROW("classifyRun: bytes must be a Uint8Array");
  if (!typed_array(env, argv[2], napi_uint8_array, (void **)&excluded, &exLen)) THROW("classifyRun: excluded must be a Uint8Array");
  if (!typed_array(env, argv[3], napi_float64_array, (void **)&st, &stLen) || stLen < S_COUNT) THROW("classifyRun: st must be a Float64Array of the figures");
  const double PFN_MAX = 1099511627776.0; /* 2^40, the classifier's own bound on maxPfn */
  int64_t blockPfn, nPages, from, to, maxPfn;
  if (!whole(env, argv[4], 0, PFN_MAX, &blockPfn)) THROW("classifyRun: bad blockPfn");
  if (!whole(env, argv[5], 0, PFN_MAX, &nPages)) THROW("classifyRun: bad nPages");
  if (!whole(env, argv[6], 0, PFN_MAX, &from)) THROW("classifyRun: bad from");
  if (!whole(env, argv[7], 0, PFN_MAX, &to)) THROW("classifyRun: bad to");
  if (!whole(env, argv[8], 0, PFN_MAX, &maxPfn)) THROW("classifyRun: bad maxPfn");

  const int64_t size = P[P_SIZE];
  const int64_t W = P[P_W];
  if (size < 16 || size > 4096 || W != size >> 2) THROW("classifyRun: struct page size out of range");
  const int32_t fF = P[P_FLAGS], fM = P[P_MAPPING], fMC = P[P_MAPCOUNT], fRC = P[P_REFCOUNT], fP = P[P_PRIVATE], fH = P[P_HEAD];
  if (fF < 0 || fF + 1 >= W || fM < 0 || fM >= W || fMC < 0 || fMC >= W || fRC < 0 || fRC >= W || fP < 0 || fP + 1 >= W || fH < 0 || fH >= W) {
    THROW("classifyRun: a struct page field lies outside the struct page");
  }
  const int32_t coKind = P[P_CO_KIND], coOff = P[P_CO_OFF], dtorOff = P[P_DTOR_OFF];
  /* head-relative offsets (folio order, destructor) may reach into the first tail page, read only when it is in the window */
  if (coKind < 0 || coKind > 3 || (coKind == 1 && (coOff < 0 || coOff >= size)) || (coKind == 2 && (coOff < 0 || coOff >= 2 * size)) || dtorOff >= 2 * size) {
    THROW("classifyRun: the compound order or destructor lies outside the struct page");
  }
  const int32_t maxOrders = P[P_ORDERS];
  if (maxOrders < 1 || maxOrders > 20) THROW("classifyRun: LENGTH(zone.free_area) out of range");
  if ((uint64_t)nPages * (uint64_t)size > bytesLen) THROW("classifyRun: bytes holds fewer than nPages struct pages");
  if (maxPfn > (int64_t)exLen * 8) THROW("classifyRun: excluded is shorter than maxPfn bits");
  if (to > from && (from < blockPfn || to > blockPfn + nPages || to > maxPfn)) THROW("classifyRun: [from, to) is outside the block or maxPfn");

  const int level = P[P_LEVEL];
  const int exFree = (level & DL_EXCLUDE_FREE) != 0;
  const int exCache = (level & DL_EXCLUDE_CACHE) != 0;
  const int exCachePri = (level & DL_EXCLUDE_CACHE_PRI) != 0;
  const int exUser = (level & DL_EXCLUDE_USER_DATA) != 0;
  const int exAnyCache = exCache || exCachePri || exUser;
  const int dropRefZero = P[P_DROP_RZ] == 1;
  const int32_t headLo = P[P_HEAD_LO], headHi = P[P_HEAD_HI];
  const int32_t lruLo = P[P_LRU_LO], lruHi = P[P_LRU_HI];
  const int32_t swcLo = P[P_SWC_LO], swcHi = P[P_SWC_HI];
  const int hasSwb = P[P_HAS_SWB] == 1;
  const int32_t swbLo = P[P_SWB_LO], swbHi = P[P_SWB_HI];
  const int32_t privLo = P[P_PRIV_LO], privHi = P[P_PRIV_HI];
  const int32_t slabLo = P[P_SLAB_LO], slabHi = P[P_SLAB_HI];
  const int32_t hwpLo = P[P_HWP_LO], hwpHi = P[P_HWP_HI];
  const int hasPgBuddy = P[P_HAS_PGBUDDY] == 1;
  const int32_t pgBuddyLo = P[P_PGBUDDY_LO], pgBuddyHi = P[P_PGBUDDY_HI];
  const int hasPgHuge = P[P_HAS_PGHUGE] == 1;
  const int32_t pgHugeLo = P[P_PGHUGE_LO], pgHugeHi = P[P_PGHUGE_HI];
  const int hasBuddyType = P[P_HAS_BUDDY_T] == 1;
  const int32_t buddyType = P[P_BUDDY_T];
  const int hasOfflineType = P[P_HAS_OFFLINE_T] == 1;
  const int32_t offlineType = P[P_OFFLINE_T];
  const int hasSlabType = P[P_HAS_SLAB_T] == 1;
  const int32_t slabType = P[P_SLAB_T];
  const int hasHugetlbType = P[P_HAS_HUGE_T] == 1;
  const int32_t hugetlbType = P[P_HUGE_T];
  const int hasUnacceptedType = P[P_HAS_UNACC_T] == 1;
  const int32_t unacceptedType = P[P_UNACC_T];
  const int32_t hugetlbDtor = P[P_HUGE_DTOR];

  /* skipUntil is a pfn the loop itself stored, or 0: clip it to the pfn range all the same */
  double su = st[S_SKIP_UNTIL];
  int64_t skipUntil = su > 0 ? (su < PFN_MAX ? (int64_t)su : (int64_t)PFN_MAX) : 0;
  int64_t cCache = 0, cPriv = 0, cUser = 0, cFree = 0, cOff = 0, cHwp = 0;
  int64_t rzExtra = 0, rzTail = 0, rzTyped = 0, badBuddy = 0, badCompound = 0, examined = 0;

#define WORD(idx) rd32(bytes + (size_t)(idx) * 4)
#define EXCLUDE1(pf) (excluded[(pf) >> 3] |= (uint8_t)(1u << ((pf) & 7)))

  for (int64_t pfn = from > skipUntil ? from : skipUntil; pfn < to; pfn++) {
    if (pfn < skipUntil) {
      pfn = skipUntil - 1;
      continue;
    }
    examined++;
    const int64_t i = pfn - blockPfn;
    const int64_t b = i * W;
    const int32_t fLo = WORD(b + fF);
    const int32_t fHi = WORD(b + fF + 1);
    const int32_t mapcount = WORD(b + fMC);
    const int32_t headWord = WORD(b + fH);
    const int slab = ((fLo & slabLo) | (fHi & slabHi)) != 0 || (hasSlabType && mapcount == slabType);

    /* 0. compound tails are kept here (tails of excluded heads were excluded with the head) */
    if ((headWord & 1) != 0) {
      if (exFree && WORD(b + fRC) == 0) {
        rzExtra++;
        rzTail++;
        if (mapcount < -1) rzTyped++;
        if (dropRefZero) EXCLUDE1(pfn);
      }
      continue;
    }

    /* compound order / destructor of a head, from its first tail page (makedumpfile's window rule) */
    uint64_t order = 0;
    int huge = 0;
    const int isHead = ((fLo & headLo) | (fHi & headHi)) != 0;
    if (isHead && (pfn & (PGMM_CACHED - 1)) != PGMM_CACHED - 1 && i + 1 < nPages) {
      const int64_t nb = b + W;
      if (coKind == 1) order = bytes[(i + 1) * size + coOff];
      else if (coKind == 2) order = bytes[i * size + coOff];
      else if (coKind == 3) order = (uint32_t)WORD(nb + fF) & 0xff;
      if (hasHugetlbType) huge = mapcount == hugetlbType;
      else if (hasPgHuge) huge = ((WORD(nb + fF) & pgHugeLo) | (WORD(nb + fF + 1) & pgHugeHi)) != 0;
      else if (dtorOff >= 0) huge = bytes[i * size + dtorOff] == hugetlbDtor;
      if (order >= 64 || ((uint64_t)pfn & ((1ULL << order) - 1)) != 0) {
        badCompound++;
        order = 0;
      }
    } else if (isHead && hasHugetlbType) {
      huge = mapcount == hugetlbType;
    }

    uint64_t nr = 1ULL << order;
    int cls = 0; /* 1 free 2 cache 3 privateCache 4 user 5 hwpoison 6 offline */
    if (exFree) {
      const int buddy = hasPgBuddy ? ((fLo & pgBuddyLo) | (fHi & pgBuddyHi)) != 0 : hasBuddyType && !slab && mapcount == buddyType;
      if (buddy) {
        const int32_t pLo = WORD(b + fP);
        if (WORD(b + fP + 1) != 0 || pLo < 0 || pLo >= maxOrders) badBuddy++;
        else {
          nr = 1ULL << pLo;
          cls = 1;
        }
      } else if (hasUnacceptedType && mapcount == unacceptedType) {
        nr = 1ULL << (maxOrders - 1);
        cls = 1;
      }
    }
    if (cls == 0 && exAnyCache) {
      const int cache = ((fLo & lruLo) | (fHi & lruHi)) != 0 || (((fLo & swcLo) | (fHi & swcHi)) != 0 && (!hasSwb || ((fLo & swbLo) | (fHi & swbHi)) != 0));
      const int anon = (WORD(b + fM) & 1) != 0 && !slab;
      const int priv = ((fLo & privLo) | (fHi & privHi)) != 0;
      if (exCache && cache && !priv && !anon) cls = 2;
      else if (exCachePri && cache && !anon) cls = priv ? 3 : 2;
      else if (exUser && (anon || huge)) cls = 4;
    }
    if (cls == 0) {
      if (((fLo & hwpLo) | (fHi & hwpHi)) != 0) cls = 5;
      else if (hasOfflineType && !slab && mapcount == offlineType) cls = 6;
      else {
        if (exFree && WORD(b + fRC) == 0) {
          rzExtra++;
          if (mapcount < -1) rzTyped++;
          if (dropRefZero) EXCLUDE1(pfn);
        }
        continue;
      }
    }
    /* exclude [pfn, pfn + nr), clipped to maxPfn */
    int64_t n = 1;
    if (nr == 1) {
      EXCLUDE1(pfn);
    } else {
      const int64_t e = nr < (uint64_t)(maxPfn - pfn) ? pfn + (int64_t)nr : maxPfn;
      n = e - pfn;
      set_bits(excluded, pfn, e);
      if (e > skipUntil) skipUntil = e;
      pfn = e - 1;
    }
    if (cls == 1) cFree += n;
    else if (cls == 2) cCache += n;
    else if (cls == 3) cPriv += n;
    else if (cls == 4) cUser += n;
    else if (cls == 5) cHwp += n;
    else cOff += n;
  }
#undef WORD
#undef EXCLUDE1
  st[S_SKIP_UNTIL] = (double)skipUntil;
  st[S_READ] += (double)examined;
  st[S_CACHE] += (double)cCache;
  st[S_PRIV] += (double)cPriv;
  st[S_USER] += (double)cUser;
  st[S_FREE] += (double)cFree;
  st[S_OFFLINE] += (double)cOff;
  st[S_HWPOISON] += (double)cHwp;
  st[S_RZ_EXTRA] += (double)rzExtra;
  st[S_RZ_TAIL] += (double)rzTail;
  st[S_RZ_TYPED] += (double)rzTyped;
  st[S_BAD_BUDDY] += (double)badBuddy;
  st[S_BAD_COMPOUND] += (double)badCompound;
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn, n;
  if (napi_create_function(env, "classifyRun", NAPI_AUTO_LENGTH, classify_run, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "classifyRun", fn) != napi_ok) return NULL;
  /* the parameter and figure counts this build expects, checked by the loader against src/classify.ts */
  if (napi_create_int32(env, P_COUNT, &n) == napi_ok) napi_set_named_property(env, exports, "paramCount", n);
  if (napi_create_int32(env, S_COUNT, &n) == napi_ok) napi_set_named_property(env, exports, "figureCount", n);
  return exports;
}
