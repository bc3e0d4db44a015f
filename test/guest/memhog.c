/*
 * memhog — a tiny static helper for the Vicover test guests.
 *
 *   memhog MIB            allocate MIB MiB of anonymous memory, fill it with non-zero
 *                         pseudo-random data, then detach (the parent returns once the
 *                         memory is filled) and sleep forever in the background.
 *   memhog -f PATH MIB    write MIB MiB of non-zero pseudo-random data to PATH (e.g. on
 *                         tmpfs) and exit. Faster than /dev/urandom under TCG.
 *   memhog -s SEED ...    seed the generator (default: time ^ pid).
 *
 * Built on the host with `gcc -static -O2`; see build.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t state;

static inline uint64_t next(void) {
  /* xorshift64*: fast and never yields an all-zero word stream. */
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}

static void fill(uint64_t *p, size_t words) {
  for (size_t i = 0; i < words; i++) {
    uint64_t v = next();
    p[i] = v ? v : 0x5a5a5a5a5a5a5a5aULL;
  }
}

static int usage(void) {
  fprintf(stderr, "usage: memhog [-s SEED] MIB | memhog [-s SEED] -f PATH MIB\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int opt;
  state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
  while ((opt = getopt(argc, argv, "f:s:")) != -1) {
    if (opt == 'f') path = optarg;
    else if (opt == 's') state = strtoull(optarg, NULL, 0) | 1;
    else return usage();
  }
  if (optind != argc - 1) return usage();
  long mib = strtol(argv[optind], NULL, 10);
  if (mib <= 0) return usage();
  size_t chunk = 1 << 20;

  if (path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror(path); return 1; }
    uint64_t *buf = malloc(chunk);
    if (!buf) { perror("malloc"); return 1; }
    for (long i = 0; i < mib; i++) {
      fill(buf, chunk / 8);
      size_t off = 0;
      while (off < chunk) {
        ssize_t n = write(fd, (char *)buf + off, chunk - off);
        if (n < 0) { if (errno == EINTR) continue; perror("write"); return 1; }
        off += (size_t)n;
      }
    }
    if (close(fd) != 0) { perror("close"); return 1; }
    return 0;
  }

  /* Anonymous mode: the child fills and keeps the memory; the parent waits for
   * the child's "filled" byte on a pipe, so `memhog N` returns once N MiB exist. */
  int pfd[2];
  if (pipe(pfd) != 0) { perror("pipe"); return 1; }
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); return 1; }
  if (pid > 0) {
    char c;
    close(pfd[1]);
    ssize_t n = read(pfd[0], &c, 1);
    if (n == 1 && c == 'k') { printf("memhog: %ld MiB filled (pid %d)\n", mib, (int)pid); return 0; }
    fprintf(stderr, "memhog: child failed\n");
    return 1;
  }
  close(pfd[0]);
  setsid();
  size_t len = (size_t)mib << 20;
  uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); return 1; }
  /* Keep plain 4 KiB pages so every page is an ordinary user page. */
  madvise(p, len, MADV_NOHUGEPAGE);
  fill(p, len / 8);
  if (write(pfd[1], "k", 1) != 1) return 1;
  close(pfd[1]);
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2); }
  for (;;) pause();
}
