/*
 * vicover-spawn.node: start the copy helper with posix_spawn (Node-API addon; see src/native-spawn.ts).
 *
 * libuv starts children with fork(): the page tables of the whole Node process are copied, and after
 * the child's exec every page the parent writes for the first time is a write-protect fault. On the
 * VMs this project was measured on a fault costs ~14 µs, and a dump process that spawns its copy
 * helper with ~60 MiB resident paid ~17 ms in the spawn and ~1 700 faults after it
 * (bench/spawn-cow.mjs, docs/performance.md). glibc's posix_spawn uses CLONE_VM|CLONE_VFORK: no
 * page tables are copied and the parent's pages stay as they were.
 *
 *   spawnPiped(path, fd3, fd4) -> [pid, stdinFd, stdoutFd, stderrFd]
 *     path: the executable; fd3, fd4: descriptors of this process the child gets as 3 and 4 (-1: none,
 *     the child has no such descriptor). The child's 0, 1 and 2 are new pipes; this process gets their
 *     other ends (close-on-exec), to wrap in sockets. The child's signal mask and dispositions are
 *     reset to the defaults (Node's own, e.g. SIGPIPE ignored, are not inherited).
 *     Throws an Error with the errno name when a pipe or the spawn fails (e.g. ENOENT, EACCES).
 *   waitChild(pid) -> null (still running) | [code, signal]
 *     waitpid(pid, WNOHANG): exit code (or -1) and terminating signal number (or 0).
 *
 * Every descriptor this module creates in the parent is closed on every path. The child's 0–4 are
 * dup2'ed from close-on-exec copies, and every descriptor from 5 on is closed in it
 * (posix_spawn_file_actions_addclosefrom_np, glibc ≥ 2.34), so nothing else of this process — not
 * even a descriptor inherited without close-on-exec — reaches the child.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  const char *name = err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == ENOEXEC ? "ENOEXEC" : err == EMFILE ? "EMFILE" : "ESPAWN";
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) == napi_ok &&
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) == napi_ok && napi_create_error(env, code, message, &error) == napi_ok)
    napi_throw(env, error);
  return NULL;
}

static int get_int(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return -1;
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

/* Descriptors without close-on-exec that this process inherited (a supervisor's, an IPC channel's)
 * must not reach the child either: everything from `from` on is closed in it. */
static int close_from(posix_spawn_file_actions_t *fa, int from) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  return posix_spawn_file_actions_addclosefrom_np(fa, from);
#else
  (void)fa;
  (void)from;
  return ENOSYS; /* no closefrom: spawnPiped throws, and the copier starts its helper with child_process */
#endif
}

/* A close-on-exec copy of fd numbered 10 or above, so that the dup2s to 0..4 in the child never
 * clobber a descriptor not yet used; the original is closed when `replace` is set. -1 on failure. */
static int dup_high(int *fd, int replace) {
  int hi = fcntl(*fd, F_DUPFD_CLOEXEC, 10);
  if (hi < 0) return -1;
  if (replace) close(*fd);
  *fd = hi;
  return 0;
}

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

static napi_value spawn_piped(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) {
    napi_throw_type_error(env, NULL, "spawnPiped(path, fd3, fd4)");
    return NULL;
  }
  char path[4096];
  size_t plen = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen == 0 || plen >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "spawnPiped: path must be a non-empty string");
    return NULL;
  }
  int32_t src[2];
  if (get_int(env, argv[1], &src[0]) || get_int(env, argv[2], &src[1]) || src[0] < -1 || src[1] < -1) {
    napi_throw_type_error(env, NULL, "spawnPiped: fd3 and fd4 must be descriptors or -1");
    return NULL;
  }
  /* in[0..1]: child's stdin (read end, write end); out: stdout; err: stderr; dup: fd3/fd4 copies */
  int fds[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
  int *in = fds, *out = fds + 2, *er = fds + 4, *dup = fds + 6;
  int err = 0;
  const char *what = "pipe";
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(er, O_CLOEXEC)) {
    err = errno;
    close_all(fds, 8);
    return throw_errno(env, what, err);
  }
  /* the child's pipe ends (moved) and copies of fd3/fd4 (the caller keeps its own), all above 9 */
  int *moved[3] = {&in[0], &out[1], &er[1]};
  for (int i = 0; i < 3; i++)
    if (dup_high(moved[i], 1)) goto dup_failed;
  for (int i = 0; i < 2; i++) {
    if (src[i] < 0) continue;
    dup[i] = src[i];
    if (dup_high(&dup[i], 0)) {
      dup[i] = -1;
      goto dup_failed;
    }
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  pid_t pid = -1;
  if ((err = posix_spawn_file_actions_init(&fa))) {
    close_all(fds, 8);
    return throw_errno(env, "posix_spawn_file_actions_init", err);
  }
  if ((err = posix_spawnattr_init(&at))) {
    posix_spawn_file_actions_destroy(&fa);
    close_all(fds, 8);
    return throw_errno(env, "posix_spawnattr_init", err);
  }
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  what = "posix_spawn setup";
  if ((err = posix_spawn_file_actions_adddup2(&fa, in[0], 0)) || (err = posix_spawn_file_actions_adddup2(&fa, out[1], 1)) ||
      (err = posix_spawn_file_actions_adddup2(&fa, er[1], 2)) ||
      (err = dup[0] >= 0 ? posix_spawn_file_actions_adddup2(&fa, dup[0], 3) : posix_spawn_file_actions_addclose(&fa, 3)) ||
      (err = dup[1] >= 0 ? posix_spawn_file_actions_adddup2(&fa, dup[1], 4) : posix_spawn_file_actions_addclose(&fa, 4)) ||
      (err = close_from(&fa, 5)) ||
      (err = posix_spawnattr_setsigmask(&at, &none)) || (err = posix_spawnattr_setsigdefault(&at, &all)) ||
      (err = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))) {
  } else {
    what = path;
    char *const args[] = {path, NULL};
    err = posix_spawn(&pid, path, &fa, &at, args, environ);
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  /* the child's ends and the copies are the child's now (or nobody's) */
  int mine[3] = {in[1], out[0], er[0]};
  int theirs[5] = {in[0], out[1], er[1], dup[0], dup[1]};
  close_all(theirs, 5);
  if (err) {
    close_all(mine, 3);
    return throw_errno(env, what, err);
  }
  napi_value res, v;
  int32_t vals[4] = {(int32_t)pid, mine[0], mine[1], mine[2]};
  if (napi_create_array_with_length(env, 4, &res) != napi_ok) return NULL;
  for (uint32_t i = 0; i < 4; i++) {
    if (napi_create_int32(env, vals[i], &v) != napi_ok || napi_set_element(env, res, i, v) != napi_ok) return NULL;
  }
  return res;

dup_failed:
  err = errno;
  close_all(fds, 8);
  return throw_errno(env, "dup", err);
}

static napi_value wait_child(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t pid;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || get_int(env, argv[0], &pid) || pid <= 0) {
    napi_throw_type_error(env, NULL, "waitChild(pid > 0)");
    return NULL;
  }
  int status = 0;
  pid_t r;
  do r = waitpid(pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  napi_value res = NULL, a, b;
  if (r == 0) {
    napi_get_null(env, &res);
    return res;
  }
  if (r < 0) return throw_errno(env, "waitpid", errno);
  int32_t code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  int32_t sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  if (napi_create_array_with_length(env, 2, &res) != napi_ok || napi_create_int32(env, code, &a) != napi_ok ||
      napi_create_int32(env, sig, &b) != napi_ok || napi_set_element(env, res, 0, a) != napi_ok || napi_set_element(env, res, 1, b) != napi_ok)
    return NULL;
  return res;
}

NAPI_MODULE_INIT() {
  napi_value f;
  if (napi_create_function(env, "spawnPiped", NAPI_AUTO_LENGTH, spawn_piped, NULL, &f) != napi_ok ||
      napi_set_named_property(env, exports, "spawnPiped", f) != napi_ok)
    return NULL;
  if (napi_create_function(env, "waitChild", NAPI_AUTO_LENGTH, wait_child, NULL, &f) != napi_ok ||
      napi_set_named_property(env, exports, "waitChild", f) != napi_ok)
    return NULL;
  return exports;
}
