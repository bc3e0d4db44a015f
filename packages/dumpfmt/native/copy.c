/*
 * vicover-copy: in-kernel page copies for the dump writers.
 *
 * Node.js 20 cannot call copy_file_range(2) with offsets, nor sync_file_range(2). The kdump writer
 * spawns this helper with the input image on fd 3 (or nothing, for write-back hints only) and the
 * dump file on fd 4, and sends fixed-size requests on stdin; one reply per request on stdout, in
 * order.
 *
 *   request  (32 bytes, little endian): u32 op, u32 flags, u64 a, u64 b, u64 c
 *     op 1 COPY       a = input offset, b = output offset, c = length.
 *                     Holes of the input (SEEK_DATA/SEEK_HOLE) and bytes past its end are not
 *                     written: they stay holes of the output, which reads back as the same zeros
 *                     (the writer extends the file once it knows where its data ends).
 *                     flags & 1: start write-back of [b, b + c) afterwards (sync_file_range WRITE).
 *     op 2 WRITEBACK  a = output offset, b = length: start write-back, do not wait. flags & 1: the
 *                     writer wrote these bytes itself (they count toward op 5's background sync).
 *     op 3 DATASYNC   fdatasync(fd 4). The reply's byte count is the number of background syncs
 *                     (op 5) done so far.
 *     op 4 PACK       a = input offset, b = output offset (or ~0: where the previous PACK ended),
 *                     c = length, a multiple of 4096 and at most 64 MiB: the 4 KiB pages of
 *                     [a, a + c) are read (bytes past the input's end read as zero); the pages that
 *                     are not all zero are written one after the other from the output offset, the
 *                     zero pages are not written. flags & 1: start write-back as for COPY.
 *     op 5 BGSYNC     a = bytes (0: off): from now on, whenever that many bytes have been written by
 *                     COPY and PACK, or announced by WRITEBACK with flags & 1 (data the writer wrote
 *                     itself), since the last background sync began, a thread of this helper calls
 *                     fdatasync on its own open file description of the dump (so the writer's
 *                     descriptor still sees any write-back error at its own fdatasync: errors are
 *                     reported to every open file description). Durability stays the writer's final
 *                     fdatasync; this only starts the flush of the disk's cache while the copy goes on,
 *                     which on a virtual disk is most of an fdatasync's time. A failed background
 *                     sync fails every later request.
 *   reply    (16 bytes): i64 status (0, or -errno), u64 bytes of data copied (holes excluded; PACK:
 *                     bytes written); PACK's reply is followed by the u64 output offset it wrote
 *                     from (the writer checks that each went on where the previous one ended),
 *                     then ceil(c / 4096 / 8) bytes, one bit per page, least significant first, set
 *                     for a zero page.
 *
 * copy_file_range falls back to pread/pwrite when the kernel or file systems refuse it (EXDEV,
 * EINVAL, ENOSYS, EOPNOTSUPP). The helper never reads more than a request asks for and exits on
 * end of input or on a malformed request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_FD 3
#define OUT_FD 4
#define BUF_BYTES (1 << 20)

static int use_cfr = 1;
static int holes_ok = 1;
static char *buf;

static int read_full(int fd, void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)p + got, n - got);
    if (r == 0) return got == 0 ? 0 : -1;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += (size_t)r;
  }
  return 1;
}

static int write_full(int fd, const void *p, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = write(fd, (const char *)p + put, n - put);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    put += (size_t)r;
  }
  return 0;
}

/* pwrite all of [p, p+n) at pos. Returns 0 or -errno. */
static int64_t write_at(const char *p, size_t n, off_t pos) {
  size_t w = 0;
  while (w < n) {
    ssize_t k = pwrite(OUT_FD, p + w, n - w, pos + (off_t)w);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    w += (size_t)k;
  }
  return 0;
}

/* Copy [in, in+n) to out with pread/pwrite. Returns bytes copied (< n at input EOF) or -errno. */
static int64_t copy_rw(off_t in, off_t out, uint64_t n) {
  uint64_t done = 0;
  if (!buf && !(buf = malloc(BUF_BYTES))) return -ENOMEM;
  while (done < n) {
    size_t want = n - done > BUF_BYTES ? BUF_BYTES : (size_t)(n - done);
    ssize_t r = pread(IN_FD, buf, want, in + (off_t)done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    int64_t e = write_at(buf, (size_t)r, out + (off_t)done);
    if (e < 0) return e;
    done += (uint64_t)r;
  }
  return (int64_t)done;
}

/* Copy a data extent. Returns bytes copied or -errno. */
static int64_t copy_data(off_t in, off_t out, uint64_t n) {
  uint64_t done = 0;
  while (done < n && use_cfr) {
    loff_t ip = in + (off_t)done, op = out + (off_t)done;
    ssize_t r = copy_file_range(IN_FD, &ip, OUT_FD, &op, (size_t)(n - done), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF) {
        use_cfr = 0;
        break;
      }
      return -errno;
    }
    if (r == 0) return (int64_t)done; /* input EOF: the rest reads as zero */
    done += (uint64_t)r;
  }
  if (done < n) {
    int64_t r = copy_rw(in + (off_t)done, out + (off_t)done, n - done);
    if (r < 0) return r;
    done += (uint64_t)r;
  }
  return (int64_t)done;
}

static int64_t do_copy(uint64_t in, uint64_t out, uint64_t len, uint64_t *copied) {
  uint64_t end = in + len;
  uint64_t pos = in;
  *copied = 0;
  while (pos < end) {
    uint64_t data = pos, hole = end;
    if (holes_ok) {
      off_t d = lseek(IN_FD, (off_t)pos, SEEK_DATA);
      if (d < 0) {
        if (errno == ENXIO) break; /* only a hole (or EOF) from pos on */
        holes_ok = 0;              /* no SEEK_DATA support: copy everything */
      } else {
        data = (uint64_t)d;
        if (data >= end) break;
        off_t h = lseek(IN_FD, (off_t)data, SEEK_HOLE);
        if (h >= 0 && (uint64_t)h < end) hole = (uint64_t)h;
      }
    }
    int64_t r = copy_data((off_t)data, (off_t)(out + (data - in)), hole - data);
    if (r < 0) return r;
    *copied += (uint64_t)r;
    if ((uint64_t)r < hole - data) break; /* input EOF */
    pos = hole;
  }
  return 0;
}

/* Background syncs (op 5): a thread waits until enough bytes were written, then fdatasyncs. It runs
 * until the process exits (after the writer's own final fdatasync, so nothing is left to sync). */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int fd;             /* our own open file description of the dump; -1: off */
  uint64_t threshold; /* bytes between syncs */
  uint64_t pending;   /* bytes written since the last sync began */
  uint64_t done;      /* syncs completed */
  int busy, err;
} bg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, -1, 0, 0, 0, 0, 0};

static void *bg_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&bg.mu);
  for (;;) {
    while (bg.pending < bg.threshold) pthread_cond_wait(&bg.cv, &bg.mu);
    bg.pending = 0;
    bg.busy = 1;
    pthread_mutex_unlock(&bg.mu);
    int e = fdatasync(bg.fd) < 0 ? errno : 0;
    pthread_mutex_lock(&bg.mu);
    bg.busy = 0;
    bg.done++;
    if (e && !bg.err) bg.err = e;
  }
  return NULL;
}

/* Bytes written: wake the sync thread when enough have gathered and it is idle. */
static void bg_note(uint64_t bytes) {
  if (bg.fd < 0 || bytes == 0) return;
  pthread_mutex_lock(&bg.mu);
  bg.pending += bytes;
  if (bg.pending >= bg.threshold && !bg.busy) pthread_cond_signal(&bg.cv);
  pthread_mutex_unlock(&bg.mu);
}

/* op 5. Returns 0 or -errno. */
static int64_t bg_start(uint64_t threshold) {
  pthread_mutex_lock(&bg.mu);
  int running = bg.fd >= 0;
  bg.threshold = threshold ? threshold : UINT64_MAX;
  pthread_mutex_unlock(&bg.mu);
  if (running || threshold == 0) return 0;
  char path[32];
  snprintf(path, sizeof path, "/proc/self/fd/%d", OUT_FD);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  bg.fd = fd;
  pthread_t t;
  int e = pthread_create(&t, NULL, bg_main, NULL);
  if (e) {
    close(fd);
    bg.fd = -1;
    return -e;
  }
  pthread_detach(t);
  return 0;
}

/* A request's status as replied: a failed background sync fails every later request. */
static int64_t with_bg_error(int64_t status) {
  if (status != 0 || bg.fd < 0) return status;
  pthread_mutex_lock(&bg.mu);
  int e = bg.err;
  pthread_mutex_unlock(&bg.mu);
  return e ? -e : 0;
}

#define PACK_PAGE 4096
#define PACK_MAX ((uint64_t)64 << 20)
static uint64_t pack_cursor;

static int page_is_zero(const char *p) {
  const uint64_t *w = (const uint64_t *)(const void *)p;
  if (w[0] || w[PACK_PAGE / 8 - 1]) return 0;
  uint64_t acc = 0;
  for (size_t i = 0; i < PACK_PAGE / 8; i++) acc |= w[i];
  return acc == 0;
}

/* PACK: see the top of the file. zbits has room for len / PACK_PAGE bits. */
static int64_t do_pack(uint64_t in, uint64_t out, uint64_t len, unsigned char *zbits, uint64_t *written) {
  *written = 0;
  if (!buf && !(buf = malloc(BUF_BYTES))) return -ENOMEM;
  uint64_t page = 0;
  for (uint64_t done = 0; done < len;) {
    size_t want = len - done > BUF_BYTES ? BUF_BYTES : (size_t)(len - done);
    size_t got = 0;
    while (got < want) {
      ssize_t r = pread(IN_FD, buf + got, want - got, (off_t)(in + done + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      if (r == 0) break; /* input EOF: the rest reads as zero */
      got += (size_t)r;
    }
    if (got < want) memset(buf + got, 0, want - got);
    /* runs of non-zero pages go out in one write each */
    size_t run = 0, runPages = 0;
    for (size_t off = 0; off < want; off += PACK_PAGE, page++) {
      if (page_is_zero(buf + off)) {
        zbits[page / 8] |= (unsigned char)(1u << (page % 8));
        if (runPages) {
          int64_t e = write_at(buf + run, runPages * PACK_PAGE, (off_t)(out + *written));
          if (e < 0) return e;
          *written += runPages * PACK_PAGE;
          runPages = 0;
        }
        continue;
      }
      if (!runPages) run = off;
      runPages++;
    }
    if (runPages) {
      int64_t e = write_at(buf + run, runPages * PACK_PAGE, (off_t)(out + *written));
      if (e < 0) return e;
      *written += runPages * PACK_PAGE;
    }
    done += want;
  }
  return 0;
}

int main(void) {
  if (fcntl(OUT_FD, F_GETFD) < 0) {
    fprintf(stderr, "vicover-copy: no output file on fd %d\n", OUT_FD);
    return 2;
  }
  int have_in = fcntl(IN_FD, F_GETFD) >= 0;
  unsigned char req[32];
  for (;;) {
    int r = read_full(0, req, sizeof req);
    if (r == 0) return 0;
    if (r < 0) {
      fprintf(stderr, "vicover-copy: truncated request\n");
      return 2;
    }
    uint32_t op, flags;
    uint64_t a, b, c;
    memcpy(&op, req, 4);
    memcpy(&flags, req + 4, 4);
    memcpy(&a, req + 8, 8);
    memcpy(&b, req + 16, 8);
    memcpy(&c, req + 24, 8);
    int64_t status = 0;
    uint64_t copied = 0;
    const uint64_t LIM = (uint64_t)1 << 62;
    if (op == 1) {
      if (!have_in) status = -EBADF;
      else if (a >= LIM || b >= LIM || c >= LIM) status = -EINVAL;
      else {
        status = do_copy(a, b, c, &copied);
        if (status == 0 && (flags & 1) && c > 0) sync_file_range(OUT_FD, (off_t)b, (off_t)c, SYNC_FILE_RANGE_WRITE);
        bg_note(copied);
      }
    } else if (op == 2) {
      if (a >= LIM || b >= LIM) status = -EINVAL;
      else if (b > 0 && sync_file_range(OUT_FD, (off_t)a, (off_t)b, SYNC_FILE_RANGE_WRITE) < 0) status = -errno;
      else if (flags & 1) bg_note(b);
    } else if (op == 3) {
      if (fdatasync(OUT_FD) < 0) status = -errno;
      pthread_mutex_lock(&bg.mu);
      copied = bg.done;
      pthread_mutex_unlock(&bg.mu);
    } else if (op == 5) {
      status = a >= LIM ? -EINVAL : bg_start(a);
    } else if (op == 4) {
      /* the length is checked before anything else: it sizes the reply */
      if (c > PACK_MAX || c % PACK_PAGE) {
        fprintf(stderr, "vicover-copy: bad PACK length %llu\n", (unsigned long long)c);
        return 2;
      }
      /* the reply goes out in one write: status, bytes written, where from, the zero-page bits */
      static unsigned char rep[24 + PACK_MAX / PACK_PAGE / 8];
      unsigned char *zbits = rep + 24;
      size_t zlen = (size_t)((c / PACK_PAGE + 7) / 8);
      memset(zbits, 0, zlen);
      uint64_t out = b == UINT64_MAX ? pack_cursor : b;
      if (!have_in) status = -EBADF;
      else if (a >= LIM || out >= LIM) status = -EINVAL;
      else {
        status = do_pack(a, out, c, zbits, &copied);
        pack_cursor = out + copied;
        if (status == 0 && (flags & 1) && copied > 0) sync_file_range(OUT_FD, (off_t)out, (off_t)copied, SYNC_FILE_RANGE_WRITE);
        bg_note(copied);
      }
      status = with_bg_error(status);
      memcpy(rep, &status, 8);
      memcpy(rep + 8, &copied, 8);
      memcpy(rep + 16, &out, 8);
      if (write_full(1, rep, 24 + zlen) < 0) return 0;
      continue;
    } else {
      fprintf(stderr, "vicover-copy: unknown request %u\n", op);
      return 2;
    }
    status = with_bg_error(status);
    unsigned char rep[16];
    memcpy(rep, &status, 8);
    memcpy(rep + 8, &copied, 8);
    if (write_full(1, rep, sizeof rep) < 0) return 0; /* the writer is gone */
  }
}
