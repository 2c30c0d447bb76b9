/* SPDX-License-Identifier: Apache-2.0
 * Fuzz target: the NPY reader (ref/src/npy.c), in memory and through a file.
 *
 * For every input it checks, beyond "no crash, no sanitizer finding":
 *   - resq_npy_parse and resq_npy_read agree (same status, same array): the
 *     file path judges the preamble against the size on disk before reading,
 *     the in-memory path re-checks everything, and they must not diverge;
 *   - a rejected input leaves the output zeroed (npy.h: "nothing leaks");
 *   - an accepted array is self-consistent (nbytes = numel * itemsize, at most
 *     RESQ_NPY_MAX_DIM dimensions, no negative dimension) and survives a
 *     round trip: resq_npy_header + the data parses back to the same dtype,
 *     shape and bytes.
 * A violated property calls abort(), which libFuzzer reports as a crash.
 *
 * Built two ways (one source): with clang -fsanitize=fuzzer by ci/fuzz.sh, and
 * with the suite's compiler plus verify/fuzz/replay_main.c as the ctest entry
 * fuzz_npy_replay, which replays the committed corpus and regression files. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resq/dtype.h"
#include "resq/npy.h"
#include "resq/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

#define PROP(c)                                                                    \
  do {                                                                             \
    if (!(c)) {                                                                    \
      fprintf(stderr, "fuzz_npy: property failed: %s (line %d)\n", #c, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

static int is_zeroed(const resq_array *a) {
  static const resq_array z;
  return a->data == NULL && a->ndim == 0 && a->nbytes == 0 && a->dtype == z.dtype;
}

static int same_array(const resq_array *a, const resq_array *b) {
  if (a->dtype != b->dtype || a->ndim != b->ndim || a->nbytes != b->nbytes) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

static void check_accepted(const resq_array *a) {
  PROP(a->ndim >= 0 && a->ndim <= RESQ_NPY_MAX_DIM);
  uint64_t n = 1;
  for (int i = 0; i < a->ndim; i++) {
    PROP(a->shape[i] >= 0);
    n *= (uint64_t)a->shape[i]; /* no overflow: numel*itemsize <= 2^40 unless a dim is 0 */
    if (a->shape[i] == 0) n = 0;
  }
  PROP((uint64_t)a->nbytes == n * resq_dtype_size(a->dtype));
  PROP((a->nbytes == 0) == (a->data == NULL));
  /* round trip through the writer's header */
  char hdr[640];
  size_t hlen = 0;
  if (resq_npy_header(a->dtype, a->ndim, a->shape, hdr, sizeof hdr, &hlen) != RESQ_OK) {
    /* every dtype the reader accepts has a descr the writer emits, and an
     * accepted shape passed the same size check: any refusal here is a bug */
    fprintf(stderr, "fuzz_npy: writer refused an accepted array: %s\n", resq_last_error());
    abort();
  }
  PROP(hlen % 64 == 0);
  uint8_t *img = (uint8_t *)malloc(hlen + a->nbytes + 1);
  PROP(img != NULL);
  memcpy(img, hdr, hlen);
  if (a->nbytes) memcpy(img + hlen, a->data, a->nbytes);
  resq_array b;
  resq_status st = resq_npy_parse(img, hlen + a->nbytes, &b);
  if (st != RESQ_OK) fprintf(stderr, "fuzz_npy: round trip failed: %s\n", resq_last_error());
  PROP(st == RESQ_OK);
  PROP(same_array(a, &b));
  resq_array_free(&b);
  free(img);
}

static char g_path[64];

static void remove_tmp(void) {
  if (g_path[0]) unlink(g_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  resq_array a;
  resq_status st = resq_npy_parse(data, size, &a);
  if (st != RESQ_OK) PROP(is_zeroed(&a));
  else check_accepted(&a);

  /* the same bytes as a file: one scratch file per process */
  if (!g_path[0]) {
    snprintf(g_path, sizeof g_path, "/tmp/resq_fuzz_npy.%ld.npy", (long)getpid());
    atexit(remove_tmp);
  }
  FILE *f = fopen(g_path, "wb");
  PROP(f != NULL);
  PROP(size == 0 || fwrite(data, 1, size, f) == size);
  PROP(fclose(f) == 0);
  resq_array b;
  resq_status st2 = resq_npy_read(g_path, &b);
  if (st2 != st)
    fprintf(stderr, "fuzz_npy: parse says %s, read says %s (%s)\n", resq_status_name(st), resq_status_name(st2),
            resq_last_error());
  PROP(st2 == st);
  if (st2 != RESQ_OK) PROP(is_zeroed(&b));
  else PROP(same_array(&a, &b));
  resq_array_free(&a);
  resq_array_free(&b);
  return 0;
}
