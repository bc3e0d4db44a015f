/*
 * vicover-pack.node: the per-page work of a zlib kdump, in C (Node-API addon, loaded by the
 * compression workers; see src/kdump/compress-worker.ts and src/native-pack.ts).
 *
 * node:zlib's deflateSync() sets up and tears down a whole deflate stream for every 4 KiB page, which
 * costs more than compressing it. Here one stream per thread is reset between pages (deflateReset),
 * which is what makedumpfile's compress2() per page amounts to, minus the allocation.
 *
 *   packPages(src, srcOffset, pages, pageSize, dst, sizes, excludeZero, level) -> bytes used in dst
 *
 *   src, dst: Uint8Array (Buffer); sizes: Int32Array with at least `pages` entries.
 *   For page i (src[srcOffset + i*pageSize ...]):
 *     sizes[i] = 0        a zero page (only when excludeZero): nothing written
 *     sizes[i] = n > 0    zlib stream of n < pageSize bytes appended to dst
 *     sizes[i] = -pageSize  stored raw (the compressed form would not be smaller): page appended
 *   Same contract, same stream parameters (level, windowBits 12, memLevel 8) as the JavaScript path.
 *
 * Every length is checked against the buffers before anything is touched: the page bytes come from a
 * crashed guest and may be anything, but sizes and offsets come from the writer, and a mistake there
 * throws a JavaScript error rather than writing out of bounds.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
  z_stream zs;
  int level;
  int ready;
} packer_t;

static void packer_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  packer_t *p = data;
  if (p->ready) deflateEnd(&p->zs);
  free(p);
}

#define THROW(msg)                            \
  do {                                        \
    napi_throw_range_error(env, NULL, (msg)); \
    return NULL;                              \
  } while (0)

#define CHECK(call)                                               \
  do {                                                            \
    if ((call) != napi_ok) {                                      \
      napi_throw_error(env, NULL, "vicover-pack: bad argument");  \
      return NULL;                                                \
    }                                                             \
  } while (0)

static int is_zero(const uint8_t *p, size_t n) {
  /* n is a multiple of 8 (checked); compare words, cheap rejects first */
  const uint64_t *w = (const uint64_t *)(const void *)p;
  size_t k = n / 8;
  if (w[0] || w[k - 1]) return 0;
  uint64_t acc = 0;
  for (size_t i = 0; i < k; i++) acc |= w[i];
  return acc == 0;
}

static packer_t *packer_for(napi_env env, int level) {
  packer_t *p = NULL;
  if (napi_get_instance_data(env, (void **)&p) != napi_ok) return NULL;
  if (p && p->ready && p->level == level) return p;
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (napi_set_instance_data(env, p, packer_free, NULL) != napi_ok) {
      free(p);
      return NULL;
    }
  }
  if (p->ready) {
    deflateEnd(&p->zs);
    p->ready = 0;
  }
  memset(&p->zs, 0, sizeof p->zs);
  if (deflateInit2(&p->zs, level, Z_DEFLATED, 12, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
  p->level = level;
  p->ready = 1;
  return p;
}

/* The data and element count of a typed array of the given type; 0 when v is not one. */
static int typed_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is;
  napi_typedarray_type t;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &t, len, data, NULL, NULL) != napi_ok) return 0;
  return t == want;
}

static napi_value pack_pages(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8) THROW("packPages: 8 arguments expected");
  uint8_t *src, *dst;
  size_t srcLen, dstLen, sizesLen;
  int32_t *sizes;
  if (!typed_array(env, argv[0], napi_uint8_array, (void **)&src, &srcLen)) THROW("packPages: src must be a Uint8Array");
  int64_t srcOff, pages, ps;
  int32_t level;
  bool excludeZero;
  CHECK(napi_get_value_int64(env, argv[1], &srcOff));
  CHECK(napi_get_value_int64(env, argv[2], &pages));
  CHECK(napi_get_value_int64(env, argv[3], &ps));
  if (!typed_array(env, argv[4], napi_uint8_array, (void **)&dst, &dstLen)) THROW("packPages: dst must be a Uint8Array");
  if (!typed_array(env, argv[5], napi_int32_array, (void **)&sizes, &sizesLen)) THROW("packPages: sizes must be an Int32Array");
  CHECK(napi_get_value_bool(env, argv[6], &excludeZero));
  CHECK(napi_get_value_int32(env, argv[7], &level));

  if (ps < 512 || ps > 65536 || (ps & 7)) THROW("packPages: page size out of range");
  if (pages < 0 || srcOff < 0) THROW("packPages: negative count or offset");
  if ((uint64_t)pages > sizesLen) THROW("packPages: sizes is too short");
  if ((uint64_t)srcOff > srcLen || (uint64_t)pages * (uint64_t)ps > srcLen - (uint64_t)srcOff) THROW("packPages: src is too short");
  if ((uint64_t)pages * (uint64_t)ps > dstLen) THROW("packPages: dst is too short");
  if (level < 0 || level > 9) THROW("packPages: level must be 0-9");

  packer_t *p = packer_for(env, level);
  if (!p) {
    napi_throw_error(env, NULL, "packPages: cannot set up a zlib stream");
    return NULL;
  }
  uint64_t used = 0;
  for (int64_t i = 0; i < pages; i++) {
    const uint8_t *page = src + srcOff + (uint64_t)i * (uint64_t)ps;
    if (excludeZero && is_zero(page, (size_t)ps)) {
      sizes[i] = 0;
      continue;
    }
    /* room: at most ps - 1 bytes (a page stored raw is never larger than ps, so dst suffices) */
    if (deflateReset(&p->zs) != Z_OK) {
      napi_throw_error(env, NULL, "packPages: deflateReset failed");
      return NULL;
    }
    p->zs.next_in = (Bytef *)page;
    p->zs.avail_in = (uInt)ps;
    p->zs.next_out = dst + used;
    p->zs.avail_out = (uInt)(ps - 1);
    int r = deflate(&p->zs, Z_FINISH);
    if (r == Z_STREAM_END && p->zs.total_out > 0 && p->zs.total_out < (uLong)ps) {
      sizes[i] = (int32_t)p->zs.total_out;
      used += p->zs.total_out;
    } else {
      memcpy(dst + used, page, (size_t)ps);
      sizes[i] = (int32_t)-ps;
      used += (uint64_t)ps;
    }
  }
  napi_value out;
  CHECK(napi_create_double(env, (double)used, &out));
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "packPages", NAPI_AUTO_LENGTH, pack_pages, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "packPages", fn) != napi_ok) return NULL;
  napi_value v;
  if (napi_create_string_utf8(env, zlibVersion(), NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, exports, "zlibVersion", v);
  return exports;
}
