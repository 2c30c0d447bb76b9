/* SPDX-License-Identifier: Apache-2.0
 * npy_tool: make and compare NPY files for the shell-driven tests.
 *   npy_tool fill DTYPE SHAPE VALUE OUT   VALUE: number | nan | inf | ramp | randn:SEED
 *   npy_tool header DTYPE SHAPE OUT       header only (data missing: truncated/absurd files)
 *   npy_tool cmp A B                      exit 0 iff same dtype, shape and bytes
 *   npy_tool cmpdata A B                  exit 0 iff same dtype and bytes (shapes may differ: a reshape)
 *   npy_tool info A                       print "dtype shape"
 * SHAPE is comma separated ("3,64"; "" or "-" for a 0-d array). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/npy.h"
#include "resq/rng.h"

static int parse_shape(const char *s, int64_t *shape) {
  int nd = 0;
  if (!*s || strcmp(s, "-") == 0) return 0;
  while (*s && nd < RESQ_NPY_MAX_DIM) {
    char *end;
    shape[nd++] = strtoll(s, &end, 10);
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return -1;
  }
  return nd;
}

static void store(resq_dtype t, void *data, int64_t i, double v) {
  switch (t) {
    case RESQ_DTYPE_F16: ((uint16_t *)data)[i] = resq_f32_to_f16((float)v); break;
    case RESQ_DTYPE_BF16:
    case RESQ_DTYPE_U16: ((uint16_t *)data)[i] = resq_f32_to_bf16((float)v); break;
    case RESQ_DTYPE_F32: ((float *)data)[i] = (float)v; break;
    case RESQ_DTYPE_F64: ((double *)data)[i] = v; break;
    case RESQ_DTYPE_I8: ((int8_t *)data)[i] = (int8_t)v; break;
    case RESQ_DTYPE_U8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case RESQ_DTYPE_I16: ((int16_t *)data)[i] = (int16_t)v; break;
    case RESQ_DTYPE_I32: ((int32_t *)data)[i] = (int32_t)v; break;
    case RESQ_DTYPE_I64: ((int64_t *)data)[i] = (int64_t)v; break;
    default: break;
  }
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "fill") == 0) {
    resq_dtype t = resq_dtype_from_name(argv[2]);
    int64_t shape[RESQ_NPY_MAX_DIM];
    int nd = parse_shape(argv[3], shape);
    resq_array a;
    if (t == RESQ_DTYPE_INVALID || nd < 0 || resq_array_alloc(&a, t, nd, shape)) {
      fprintf(stderr, "npy_tool: bad dtype/shape\n");
      return 2;
    }
    int64_t n = resq_array_numel(&a);
    resq_rng r;
    int randn = strncmp(argv[4], "randn:", 6) == 0;
    if (randn) resq_rng_init(&r, strtoull(argv[4] + 6, NULL, 0));
    for (int64_t i = 0; i < n; i++) {
      double v = strcmp(argv[4], "nan") == 0   ? NAN
                 : strcmp(argv[4], "inf") == 0 ? INFINITY
                 : strcmp(argv[4], "ramp") == 0 ? (double)(i % 17) - 8.0
                 : randn                        ? resq_rng_normal(&r)
                                                : strtod(argv[4], NULL);
      store(t, a.data, i, v);
    }
    if (resq_npy_write(argv[5], t, nd, shape, a.data)) {
      fprintf(stderr, "npy_tool: %s\n", resq_last_error());
      return 1;
    }
    resq_array_free(&a);
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "header") == 0) {
    resq_dtype t = resq_dtype_from_name(argv[2]);
    int64_t shape[RESQ_NPY_MAX_DIM];
    int nd = parse_shape(argv[3], shape);
    char buf[1024];
    size_t len;
    if (t == RESQ_DTYPE_INVALID || nd < 0) return 2;
    /* the writer refuses absurd sizes, so build the dict by hand for those */
    if (resq_npy_header(t, nd, shape, buf, sizeof buf, &len)) {
      char dict[512];
      int k = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
      for (int i = 0; i < nd; i++) k += snprintf(dict + k, sizeof dict - (size_t)k, "%lld, ", (long long)shape[i]);
      snprintf(dict + k, sizeof dict - (size_t)k, "), }\n");
      size_t dl = strlen(dict);
      memcpy(buf, "\x93NUMPY\x01\x00", 8);
      buf[8] = (char)(dl & 0xff);
      buf[9] = (char)(dl >> 8);
      memcpy(buf + 10, dict, dl);
      len = 10 + dl;
    }
    FILE *f = fopen(argv[4], "wb");
    if (!f || fwrite(buf, 1, len, f) != len) return 1;
    fclose(f);
    return 0;
  }
  if (argc == 4 && (strcmp(argv[1], "cmp") == 0 || strcmp(argv[1], "cmpdata") == 0)) {
    int shape_matters = strcmp(argv[1], "cmp") == 0;
    resq_array a, b;
    memset(&b, 0, sizeof b);
    /* both arrays are freed on every path (ci/sanitize.sh runs this tool with LeakSanitizer) */
    if (resq_npy_read(argv[2], &a) || resq_npy_read(argv[3], &b)) {
      fprintf(stderr, "npy_tool cmp: %s\n", resq_last_error());
      resq_array_free(&a);
      return 1;
    }
    int same = a.dtype == b.dtype && a.nbytes == b.nbytes &&
               (!shape_matters || (a.ndim == b.ndim && memcmp(a.shape, b.shape, sizeof(int64_t) * (size_t)a.ndim) == 0));
    int rc = 0;
    if (!same) {
      fprintf(stderr, "npy_tool cmp: %s vs %s: dtype/shape differ (%s vs %s)\n", argv[2], argv[3],
              resq_dtype_name(a.dtype), resq_dtype_name(b.dtype));
      rc = 1;
    }
    for (size_t i = 0; !rc && i < a.nbytes; i++)
      if (((unsigned char *)a.data)[i] != ((unsigned char *)b.data)[i]) {
        fprintf(stderr, "npy_tool cmp: %s vs %s: first differing byte %zu of %zu\n", argv[2], argv[3], i, a.nbytes);
        rc = 1;
      }
    resq_array_free(&a);
    resq_array_free(&b);
    return rc;
  }
  if (argc == 3 && strcmp(argv[1], "info") == 0) {
    resq_array a;
    if (resq_npy_read(argv[2], &a)) {
      fprintf(stderr, "npy_tool info: %s\n", resq_last_error());
      return 1;
    }
    printf("%s ", resq_dtype_name(a.dtype));
    for (int i = 0; i < a.ndim; i++) printf("%s%lld", i ? "," : "", (long long)a.shape[i]);
    printf("\n");
    resq_array_free(&a);
    return 0;
  }
  fprintf(stderr, "usage: npy_tool fill|header|cmp|info ... (see the source header)\n");
  return 2;
}
