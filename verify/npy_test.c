/* SPDX-License-Identifier: Apache-2.0
 * NPY reader/writer: round trips of every dtype and rank, hand-written headers
 * in the variants numpy and other writers produce, a table of malformed files
 * (each must give its specific status, never a crash), truncation at every
 * length and random header corruption. Run under ASan/UBSan in the sanitizer
 * job, these are also the memory-safety checks of the parser. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resq/npy.h"
#include "resq/rng.h"
#include "resq_check.h"

/* Build an image from a header dict string (v1 or v2/v3 preamble) plus data. */
static size_t make_image(unsigned char *buf, int major, const char *dict, const void *data, size_t nd) {
  size_t dl = strlen(dict);
  size_t pre = major == 1 ? 10 : 12;
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)major;
  buf[7] = 0;
  if (major == 1) {
    buf[8] = (unsigned char)(dl & 0xff);
    buf[9] = (unsigned char)(dl >> 8);
  } else {
    for (int i = 0; i < 4; i++) buf[8 + i] = (unsigned char)(dl >> (8 * i));
  }
  memcpy(buf + pre, dict, dl);
  if (nd) memcpy(buf + pre + dl, data, nd);
  return pre + dl + nd;
}

static void case_roundtrip(void) {
  if (!rc_case("roundtrip_all_dtypes")) return;
  static const resq_dtype types[] = {RESQ_DTYPE_F16, RESQ_DTYPE_BF16, RESQ_DTYPE_F32, RESQ_DTYPE_F64,
                                     RESQ_DTYPE_I8,  RESQ_DTYPE_U8,   RESQ_DTYPE_I16, RESQ_DTYPE_U16,
                                     RESQ_DTYPE_I32, RESQ_DTYPE_I64};
  static const int64_t shapes[][3] = {{0, 0, 0}, {7, 0, 0}, {2, 3, 5}, {4, 0, 3}};
  static const int ndims[] = {0, 1, 3, 3};
  char path[] = "/tmp/resq_npy_test_XXXXXX";
  int fd = mkstemp(path);
  RC_CHECK(fd >= 0, "mkstemp");
  if (fd < 0) return;
  close(fd);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
    for (size_t s = 0; s < sizeof ndims / sizeof ndims[0]; s++) {
      resq_array a;
      resq_status st = resq_array_alloc(&a, types[t], ndims[s], shapes[s]);
      RC_CHECK(st == RESQ_OK, "alloc");
      for (size_t i = 0; i < a.nbytes; i++) ((unsigned char *)a.data)[i] = (unsigned char)resq_rng_u64(&r);
      st = resq_npy_write(path, a.dtype, a.ndim, a.shape, a.data);
      RC_CHECK(st == RESQ_OK, "write %s ndim %d: %s", resq_dtype_name(types[t]), ndims[s], resq_last_error());
      resq_array b;
      st = resq_npy_read(path, &b);
      RC_CHECK(st == RESQ_OK, "read back %s ndim %d: %s", resq_dtype_name(types[t]), ndims[s], resq_last_error());
      if (st == RESQ_OK) {
        int same = b.dtype == a.dtype && b.ndim == a.ndim && b.nbytes == a.nbytes &&
                   memcmp(b.shape, a.shape, sizeof(int64_t) * (size_t)a.ndim) == 0 &&
                   (a.nbytes == 0 || memcmp(a.data, b.data, a.nbytes) == 0);
        RC_CHECK(same, "round trip of %s ndim %d", resq_dtype_name(types[t]), ndims[s]);
      }
      FILE *f = fopen(path, "rb");
      unsigned char pre[10];
      size_t got = f ? fread(pre, 1, 10, f) : 0;
      if (f) fclose(f);
      size_t hl = got == 10 ? (size_t)pre[8] | (size_t)pre[9] << 8 : 0;
      RC_CHECK(got == 10 && pre[6] == 1 && (10 + hl) % 64 == 0, "v1 header padded to 64 bytes (len %zu)", hl);
      resq_array_free(&a);
      resq_array_free(&b);
    }
  remove(path);
}

typedef struct {
  const char *name;
  int major;
  const char *dict;
  size_t data_bytes; /* bytes of data appended */
  resq_status want;
  resq_dtype dtype; /* when want == OK */
  int ndim;
  int64_t d0;
} hdr_case;

static void case_headers(void) {
  if (!rc_case("header_variants_and_malformed")) return;
  static const hdr_case cases[] = {
      {"numpy v1", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }        \n", 24, RESQ_OK,
       RESQ_DTYPE_F32, 2, 2},
      {"keys reordered, double quotes, no trailing comma", 1,
       "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<f2\"}\n", 6, RESQ_OK, RESQ_DTYPE_F16, 1, 3},
      {"v2 preamble", 2, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }\n", 5, RESQ_OK,
       RESQ_DTYPE_U8, 1, 5},
      {"v3 preamble", 3, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }\n", 4, RESQ_OK,
       RESQ_DTYPE_I32, 0, 0},
      {"bf16 as V2", 1, "{'descr': '<V2', 'fortran_order': False, 'shape': (4,), }\n", 8, RESQ_OK,
       RESQ_DTYPE_BF16, 1, 4},
      {"native '=' order", 1, "{'descr': '=i8', 'fortran_order': False, 'shape': (1,), }\n", 8, RESQ_OK,
       RESQ_DTYPE_I64, 1, 1},
      {"fortran 1-D is C order", 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (3,), }\n", 6, RESQ_OK,
       RESQ_DTYPE_I16, 1, 3},
      {"py2 long dims", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 1L), }\n", 16, RESQ_OK,
       RESQ_DTYPE_F64, 2, 2},
      {"zero-size", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4096), }\n", 0, RESQ_OK,
       RESQ_DTYPE_F32, 2, 0},
      {"big endian", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n", 4, RESQ_ERR_UNSUPPORTED},
      {"complex dtype", 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n", 8, RESQ_ERR_UNSUPPORTED},
      {"uint32 dtype", 1, "{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }\n", 4, RESQ_ERR_UNSUPPORTED},
      {"structured dtype", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n", 4,
       RESQ_ERR_FORMAT},
      {"fortran 2-D", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16,
       RESQ_ERR_UNSUPPORTED},
      {"missing shape", 1, "{'descr': '<f4', 'fortran_order': False, }\n", 0, RESQ_ERR_FORMAT},
      {"missing descr", 1, "{'fortran_order': False, 'shape': (1,), }\n", 4, RESQ_ERR_FORMAT},
      {"extra key", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}\n", 4, RESQ_ERR_FORMAT},
      {"duplicate key", 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\n", 4,
       RESQ_ERR_FORMAT},
      {"negative dim", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n", 4, RESQ_ERR_FORMAT},
      {"float dim", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,), }\n", 4, RESQ_ERR_FORMAT},
      {"nine dims", 1,
       "{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", 1, RESQ_ERR_UNSUPPORTED},
      {"absurd size", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }\n",
       0, RESQ_ERR_TOO_LARGE},
      {"overflowing dim", 1,
       "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }\n", 0, RESQ_ERR_FORMAT},
      {"data shorter than shape", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }\n", 16,
       RESQ_ERR_FORMAT},
      {"trailing bytes", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", 8, RESQ_ERR_FORMAT},
      {"fortran_order not bool", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }\n", 4,
       RESQ_ERR_FORMAT},
      {"shape not a tuple", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': [1], }\n", 4, RESQ_ERR_FORMAT},
      {"unterminated string", 1, "{'descr': '<f4\n", 4, RESQ_ERR_FORMAT},
      {"descr swallowing the next key", 1, "{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }\n", 4,
       RESQ_ERR_UNSUPPORTED},
      {"garbage after dict", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x\n", 4,
       RESQ_ERR_FORMAT},
      {"not a dict", 1, "['descr', '<f4']\n", 4, RESQ_ERR_FORMAT},
      {"empty header", 1, "", 0, RESQ_ERR_FORMAT},
  };
  static unsigned char img[4096];
  static unsigned char data[64];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const hdr_case *c = &cases[i];
    size_t n = make_image(img, c->major, c->dict, data, c->data_bytes);
    resq_array a;
    resq_status st = resq_npy_parse(img, n, &a);
    int ok = st == c->want;
    if (ok && st == RESQ_OK) ok = a.dtype == c->dtype && a.ndim == c->ndim && (c->ndim == 0 || a.shape[0] == c->d0);
    RC_CHECK(ok, "%s: got %s (%s), want %s", c->name, resq_status_name(st), resq_last_error(),
             resq_status_name(c->want));
    if (st != RESQ_OK) RC_CHECK(a.data == NULL && a.ndim == 0, "%s: failed parse leaves the output empty", c->name);
    resq_array_free(&a);
  }
  /* preamble-level faults */
  unsigned char bad[128]; /* 10-byte preamble + 58-byte dict + 4 data bytes (64 overflowed: found by ci/sanitize.sh) */
  size_t n = make_image(bad, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", data, 4);
  resq_array a;
  bad[0] = 0x92;
  RC_CHECK(resq_npy_parse(bad, n, &a) == RESQ_ERR_FORMAT, "bad magic");
  bad[0] = 0x93;
  bad[6] = 4;
  RC_CHECK(resq_npy_parse(bad, n, &a) == RESQ_ERR_UNSUPPORTED, "version 4");
  bad[6] = 1;
  bad[7] = 1;
  RC_CHECK(resq_npy_parse(bad, n, &a) == RESQ_ERR_UNSUPPORTED, "version 1.1");
  bad[7] = 0;
  unsigned char big[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xff, 0xff, 0xff, 0xff};
  RC_CHECK(resq_npy_parse(big, sizeof big, &a) == RESQ_ERR_FORMAT, "4 GiB header length is refused");
  RC_CHECK(strstr(resq_last_error(), "limit") != NULL, "message names the header limit: %s", resq_last_error());
}

static void case_truncation(void) {
  if (!rc_case("truncation_at_every_length")) return;
  unsigned char img[256];
  float vals[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  size_t n = make_image(img, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }          \n", vals,
                        sizeof vals);
  long wrong = 0;
  for (size_t len = 0; len < n; len++) {
    unsigned char *copy = (unsigned char *)malloc(len ? len : 1); /* exact-size buffer for ASan */
    memcpy(copy, img, len);
    resq_array a;
    resq_status st = resq_npy_parse(copy, len, &a);
    wrong += st != RESQ_ERR_FORMAT;
    resq_array_free(&a);
    free(copy);
  }
  RC_CHECK(wrong == 0, "%ld truncated lengths not reported as RESQ_ERR_FORMAT", wrong);
  resq_array a;
  RC_CHECK(resq_npy_parse(img, n, &a) == RESQ_OK && a.nbytes == 32, "the full image parses");
  resq_array_free(&a);
}

static void case_mutation(void) {
  if (!rc_case("random_header_mutation")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  unsigned char base[256];
  float vals[6] = {0};
  size_t n = make_image(base, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   \n", vals,
                        sizeof vals);
  long ok = 0, inconsistent = 0;
  for (int it = 0; it < 20000; it++) {
    unsigned char *img = (unsigned char *)malloc(n);
    memcpy(img, base, n);
    int flips = 1 + (int)resq_rng_below(&r, 4);
    for (int k = 0; k < flips; k++) img[resq_rng_below(&r, n - 24)] = (unsigned char)resq_rng_u64(&r);
    resq_array a;
    resq_status st = resq_npy_parse(img, n, &a);
    if (st == RESQ_OK) {
      ok++;
      int64_t numel = resq_array_numel(&a);
      inconsistent += (size_t)numel * resq_dtype_size(a.dtype) != a.nbytes;
    }
    resq_array_free(&a);
    free(img);
  }
  RC_CHECK(inconsistent == 0, "%ld accepted mutants with nbytes != numel*itemsize", inconsistent);
  printf("  %ld of 20000 mutants still parse (e.g. whitespace changes)\n", ok);
}

static void case_files(void) {
  if (!rc_case("file_errors")) return;
  resq_array a;
  resq_status st = resq_npy_read("/nonexistent/dir/x.npy", &a);
  RC_CHECK(st == RESQ_ERR_IO && strstr(resq_last_error(), "/nonexistent/dir/x.npy"),
           "missing file: %s (%s)", resq_status_name(st), resq_last_error());
  st = resq_npy_read("/tmp", &a);
  RC_CHECK(st == RESQ_ERR_IO || st == RESQ_ERR_FORMAT, "a directory is refused: %s", resq_status_name(st));
  int64_t shp[1] = {4};
  float v[4] = {0};
  st = resq_npy_write("/nonexistent/dir/y.npy", RESQ_DTYPE_F32, 1, shp, v);
  RC_CHECK(st == RESQ_ERR_IO, "write into a missing directory: %s", resq_status_name(st));
  char path[] = "/tmp/resq_npy_empty_XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  st = resq_npy_read(path, &a);
  RC_CHECK(st == RESQ_ERR_FORMAT, "empty file: %s", resq_status_name(st));
  remove(path);
}

int main(int argc, char **argv) {
  rc_init("npy_test", argc, argv);
  case_roundtrip();
  case_headers();
  case_truncation();
  case_mutation();
  case_files();
  return rc_finish();
}
