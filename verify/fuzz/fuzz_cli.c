/* SPDX-License-Identifier: Apache-2.0
 * Fuzz target: the `resq` command's argument parsing and input validation,
 * end to end (every source of ref/cli/, with resq.c's main renamed resq_main).
 *
 * Input format: the command's arguments after "resq", one per line ('\n'; a
 * NUL byte also separates). Example corpus file:
 *     quant-act
 *     --x
 *     x.npy
 *     --out
 *     o
 * Every run happens inside a private sandbox directory (created by
 * LLVMFuzzerInitialize, removed at exit) that holds a fixed set of small input
 * files, valid and broken, plus a quant-act and a quant-weight output directory
 * (qa/, qw/) for `resq gemm` and an orthogonal basis U.npy for `resq fuse`. Arguments may only name files in the sandbox: an
 * input with '/' or ".." in any argument, or whose --out names a sandbox input
 * (or "."), is skipped, so a run never writes outside the sandbox nor changes
 * the inputs the next run sees. After each run everything the run created is
 * removed. The `layer-error` stage is skipped (see below).
 *
 * Properties checked on every input (abort() = a crash for libFuzzer):
 *   - the exit status is 0, 1 or 2 (README: 1 bad data, 2 bad usage);
 *   - a failed run (status 1 or 2) leaves no new entry in the sandbox (its
 *     --out never names an existing entry, so all or nothing means nothing).
 * Plus, as always, no crash, leak, hang or sanitizer finding.
 *
 * Built two ways (one source): clang -fsanitize=fuzzer by ci/fuzz.sh, and the
 * suite's compiler + replay_main.c as the ctest entry fuzz_cli_replay. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resq/dtype.h"
#include "resq/npy.h"
#include "resq/rng.h"

int resq_main(int argc, char **argv); /* ref/cli/resq.c, compiled with -Dmain=resq_main */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_ARGS 48
#define MAX_INPUT 4096
#define MAX_KEEP 64

static char g_sandbox[128];
static char *g_keep[MAX_KEEP]; /* entries of the sandbox after set-up */
static int g_nkeep;

#define PROP(c)                                                                    \
  do {                                                                             \
    if (!(c)) {                                                                    \
      fprintf(stderr, "fuzz_cli: property failed: %s (line %d)\n", #c, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

static int kept(const char *name) {
  for (int i = 0; i < g_nkeep; i++)
    if (strcmp(g_keep[i], name) == 0) return 1;
  return 0;
}

/* Remove a sandbox entry: a file, or a directory of files (--out cannot nest:
 * no '/' in any argument). */
static void remove_entry(const char *name) {
  struct stat sb;
  if (lstat(name, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(name);
    if (d) {
      struct dirent *e;
      char p[1024];
      while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", name, e->d_name);
        unlink(p);
      }
      closedir(d);
    }
    rmdir(name);
  } else {
    unlink(name);
  }
}

/* Remove every entry not present after set-up; return how many there were. */
static int clean_sandbox(void) {
  DIR *d = opendir(".");
  PROP(d != NULL);
  char *extra[256];
  int n = 0, total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || kept(e->d_name)) continue;
    total++;
    if (n < 256) extra[n++] = strdup(e->d_name);
  }
  closedir(d);
  for (int i = 0; i < n; i++) {
    if (extra[i]) remove_entry(extra[i]);
    free(extra[i]);
  }
  return total;
}

static void remove_sandbox(void) {
  if (!g_sandbox[0]) return;
  if (chdir(g_sandbox) == 0) {
    g_nkeep = 0; /* everything goes */
    clean_sandbox();
    if (chdir("/") != 0) return;
  }
  rmdir(g_sandbox);
}

static void put(const char *name, resq_dtype t, int nd, int64_t d0, int64_t d1, int64_t d2, int kind) {
  int64_t shape[3] = {d0, d1, d2};
  resq_array a;
  PROP(resq_array_alloc(&a, t, nd, shape) == RESQ_OK);
  int64_t n = resq_array_numel(&a);
  resq_rng r;
  resq_rng_init(&r, 0x5eedu + (uint64_t)n);
  for (int64_t i = 0; i < n; i++) {
    double v = kind == 1 ? ((i & 1) ? 1.0 : -1.0) : kind == 2 ? 1.5 : resq_rng_normal(&r);
    if (kind == 3 && i == n / 2) v = 0.0 / 0.0; /* one NaN */
    switch (t) {
      case RESQ_DTYPE_F16: ((uint16_t *)a.data)[i] = resq_f32_to_f16((float)v); break;
      case RESQ_DTYPE_U16: ((uint16_t *)a.data)[i] = resq_f32_to_bf16((float)v); break;
      case RESQ_DTYPE_F32: ((float *)a.data)[i] = (float)v; break;
      case RESQ_DTYPE_I8: ((int8_t *)a.data)[i] = (int8_t)(v < 0 ? -1 : 1); break;
      case RESQ_DTYPE_U8: ((uint8_t *)a.data)[i] = (uint8_t)i; break;
      default: break;
    }
  }
  PROP(resq_npy_write(name, t, nd, shape, a.data) == RESQ_OK);
  resq_array_free(&a);
}

static int run_resq(int argc, char **argv) {
  char *av[MAX_ARGS + 2];
  av[0] = (char *)"resq";
  for (int i = 0; i < argc; i++) av[i + 1] = argv[i];
  av[argc + 1] = NULL;
  return resq_main(argc + 1, av);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  snprintf(g_sandbox, sizeof g_sandbox, "/tmp/resq_fuzz_cli.%ld", (long)getpid());
  remove_sandbox();
  PROP(mkdir(g_sandbox, 0700) == 0);
  atexit(remove_sandbox);
  PROP(chdir(g_sandbox) == 0);
  put("x.npy", RESQ_DTYPE_F16, 2, 4, 64, 0, 0);    /* activations / calibration, K = 64 */
  put("xf.npy", RESQ_DTYPE_F32, 2, 3, 96, 0, 0);   /* n = 96 = 12 * 8 */
  put("xb.npy", RESQ_DTYPE_U16, 2, 2, 64, 0, 0);   /* bf16 bit patterns */
  put("kv.npy", RESQ_DTYPE_F16, 3, 4, 2, 32, 0);   /* [T, H, HD] */
  put("w.npy", RESQ_DTYPE_F32, 2, 16, 64, 0, 0);   /* weight [N, K] */
  put("wh.npy", RESQ_DTYPE_F16, 2, 8, 64, 0, 0);   /* f16 weight for the FP16 GEMM */
  put("s.npy", RESQ_DTYPE_I8, 1, 64, 0, 0, 1);     /* Hadamard signs */
  put("c.npy", RESQ_DTYPE_F16, 2, 2, 64, 0, 2);    /* constant rows */
  put("nan.npy", RESQ_DTYPE_F16, 2, 2, 64, 0, 3);  /* one NaN */
  put("e.npy", RESQ_DTYPE_F16, 2, 0, 64, 0, 0);    /* zero tokens */
  put("u8.npy", RESQ_DTYPE_U8, 2, 4, 64, 0, 0);    /* a dtype no stage accepts as float */
  put("x100.npy", RESQ_DTYPE_F16, 2, 2, 100, 0, 0); /* n = 100: no Hadamard matrix */
  put("b.npy", RESQ_DTYPE_F32, 1, 16, 0, 0, 0);    /* bias [N] */
  /* a truncated file and a text file */
  FILE *f = fopen("x.npy", "rb");
  PROP(f != NULL);
  char buf[100];
  PROP(fread(buf, 1, sizeof buf, f) == sizeof buf);
  fclose(f);
  f = fopen("t.npy", "wb");
  PROP(f != NULL && fwrite(buf, 1, sizeof buf, f) == sizeof buf);
  fclose(f);
  f = fopen("txt.npy", "wb");
  PROP(f != NULL && fputs("not an npy file\n", f) >= 0);
  fclose(f);
  /* quantized operands for `resq gemm`, made by the command itself */
  char *qa[] = {"quant-act", "--x", "x.npy", "--out", "qa"};
  char *qw[] = {"quant-weight", "--w", "w.npy", "--out", "qw"};
  PROP(run_resq(5, qa) == 0);
  PROP(run_resq(5, qw) == 0);
  /* an orthogonal f64 basis U.npy [64, 64] for `resq fuse` (arguments may not contain '/',
   * so the pca output is moved into the sandbox root) */
  char *pu[] = {"pca", "--x", "x.npy", "--out", "pu"};
  PROP(run_resq(5, pu) == 0);
  PROP(rename("pu/U.npy", "U.npy") == 0);
  DIR *d = opendir(".");
  PROP(d != NULL);
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && g_nkeep < MAX_KEEP) g_keep[g_nkeep++] = strdup(e->d_name);
  closedir(d);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_INPUT) return 0;
  char *buf = (char *)malloc(size + 1);
  PROP(buf != NULL);
  memcpy(buf, data, size);
  buf[size] = '\0';
  char *args[MAX_ARGS];
  int n = 0;
  size_t start = 0;
  for (size_t i = 0; i <= size; i++) {
    if (i == size || buf[i] == '\n' || buf[i] == '\0') {
      if (i == size && start == size) break; /* no empty argument from a trailing newline */
      if (n == MAX_ARGS) {
        free(buf);
        return 0;
      }
      buf[i] = '\0';
      args[n++] = buf + start;
      start = i + 1;
    }
  }
  /* `layer-error` builds a synthetic model whose size and run time are set by its
   * arguments (--config llama3-8b --tokens 1048576 is valid and runs for hours), not by
   * any input file: it is not fuzzed (its options go through the same cli_parse). */
  if (n > 0 && strcmp(args[0], "layer-error") == 0) goto skip;
  /* sandbox rules (see the header comment) */
  for (int i = 0; i < n; i++) {
    const char *v = NULL;
    if (strchr(args[i], '/') || strstr(args[i], "..")) goto skip;
    if (strcmp(args[i], "--out") == 0 && i + 1 < n) v = args[i + 1];
    else if (strncmp(args[i], "--out=", 6) == 0) v = args[i] + 6;
    if (v && (kept(v) || strcmp(v, ".") == 0)) goto skip;
  }
  int rc = run_resq(n, args);
  if (rc < 0 || rc > 2) {
    fprintf(stderr, "fuzz_cli: exit status %d (want 0, 1 or 2)\n", rc);
    abort();
  }
  int left = clean_sandbox();
  if (rc != 0 && left != 0) {
    fprintf(stderr, "fuzz_cli: failed run (status %d) left %d new entr%s in the sandbox\n", rc, left,
            left == 1 ? "y" : "ies");
    abort();
  }
skip:
  free(buf);
  return 0;
}
