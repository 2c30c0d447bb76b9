/* SPDX-License-Identifier: Apache-2.0
 * NPY reader/writer; every length is checked before it is trusted (resq/npy.h). */
#include "resq/npy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char k_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

int64_t resq_array_numel(const resq_array *a) {
  int64_t n = 1;
  for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
  return n;
}

void resq_array_free(resq_array *a) {
  if (!a) return;
  free(a->data);
  memset(a, 0, sizeof *a);
}

/* numel * itemsize with overflow and limit checks. */
static resq_status checked_size(resq_dtype t, int ndim, const int64_t *shape, uint64_t *bytes) {
  size_t item = resq_dtype_size(t);
  if (item == 0) return resq_fail(RESQ_ERR_INVALID_ARG, "invalid dtype");
  if (ndim < 0 || ndim > RESQ_NPY_MAX_DIM)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%d dimensions (at most %d supported)", ndim,
                     RESQ_NPY_MAX_DIM);
  uint64_t n = item;
  int zero = 0;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return resq_fail(RESQ_ERR_FORMAT, "negative dimension %" PRId64, shape[i]);
    if (shape[i] == 0) zero = 1;
  }
  if (zero) {
    *bytes = 0;
    return RESQ_OK;
  }
  for (int i = 0; i < ndim; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (n > RESQ_NPY_MAX_BYTES / d)
      return resq_fail(RESQ_ERR_TOO_LARGE, "array of shape dim %d = %" PRId64
                       " exceeds the %" PRIu64 "-byte limit", i, shape[i], RESQ_NPY_MAX_BYTES);
    n *= d;
  }
  *bytes = n;
  return RESQ_OK;
}

resq_status resq_array_alloc(resq_array *a, resq_dtype t, int ndim, const int64_t *shape) {
  memset(a, 0, sizeof *a);
  uint64_t bytes;
  resq_status st = checked_size(t, ndim, shape, &bytes);
  if (st) return st;
  if (bytes > (uint64_t)SIZE_MAX) return resq_fail(RESQ_ERR_TOO_LARGE, "array too large");
  void *p = NULL;
  if (bytes) {
    p = calloc(1, (size_t)bytes);
    if (!p) return resq_fail(RESQ_ERR_NOMEM, "cannot allocate %" PRIu64 " bytes", bytes);
  }
  a->dtype = t;
  a->ndim = ndim;
  for (int i = 0; i < ndim; i++) a->shape[i] = shape[i];
  a->data = p;
  a->nbytes = (size_t)bytes;
  return RESQ_OK;
}

/* ---------------- header dict parser (a tiny subset of Python literals) ---------------- */

typedef struct {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int accept(cursor *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* A quoted string of at most cap-1 chars, no escapes (numpy never writes any). */
static int parse_str(cursor *c, char *out, size_t cap) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
  char q = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != q) {
    if (*c->p == '\\' || n + 1 >= cap) return 0;
    out[n++] = *c->p++;
  }
  if (c->p >= c->end) return 0;
  c->p++;
  out[n] = '\0';
  return 1;
}

static int parse_word(cursor *c, const char *w) {
  skip_ws(c);
  size_t n = strlen(w);
  if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
    c->p += n;
    return 1;
  }
  return 0;
}

/* Non-negative decimal integer (Python may also write 'L' suffix in py2 files). */
static int parse_dim(cursor *c, int64_t *v) {
  skip_ws(c);
  if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
  uint64_t x = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    if (x > (UINT64_C(1) << 62) / 10) return 0; /* absurd: refuse before overflow */
    x = x * 10 + (uint64_t)(*c->p - '0');
    c->p++;
  }
  if (c->p < c->end && *c->p == 'L') c->p++;
  *v = (int64_t)x;
  return 1;
}

static resq_status descr_to_dtype(const char *d, resq_dtype *t) {
  static const struct {
    const char *code;
    resq_dtype t;
  } map[] = {{"f2", RESQ_DTYPE_F16}, {"f4", RESQ_DTYPE_F32}, {"f8", RESQ_DTYPE_F64},
             {"i1", RESQ_DTYPE_I8},  {"u1", RESQ_DTYPE_U8},  {"i2", RESQ_DTYPE_I16},
             {"u2", RESQ_DTYPE_U16}, {"i4", RESQ_DTYPE_I32}, {"i8", RESQ_DTYPE_I64},
             {"V2", RESQ_DTYPE_BF16}};
  char order = d[0];
  const char *code = d + 1;
  if (order != '<' && order != '|' && order != '=' && order != '>')
    return resq_fail(RESQ_ERR_FORMAT, "descr '%s' has no byte-order character", d);
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (strcmp(code, map[i].code) != 0) continue;
    size_t sz = resq_dtype_size(map[i].t);
    if (order == '>' && sz > 1 && map[i].t != RESQ_DTYPE_BF16)
      return resq_fail(RESQ_ERR_UNSUPPORTED, "descr '%s' is big-endian (only little-endian is supported)", d);
    *t = map[i].t;
    return RESQ_OK;
  }
  return resq_fail(RESQ_ERR_UNSUPPORTED,
                   "dtype '%s' is not supported (supported: f2 f4 f8 i1 u1 i2 u2 i4 i8, V2 = bf16)", d);
}

static resq_status parse_header(const char *h, size_t len, resq_array *out, int *fortran) {
  cursor c = {h, h + len};
  int have_descr = 0, have_fortran = 0, have_shape = 0;
  if (!accept(&c, '{')) return resq_fail(RESQ_ERR_FORMAT, "header does not start with '{'");
  for (;;) {
    if (accept(&c, '}')) break;
    char key[32];
    if (!parse_str(&c, key, sizeof key)) return resq_fail(RESQ_ERR_FORMAT, "header: expected a quoted key");
    if (!accept(&c, ':')) return resq_fail(RESQ_ERR_FORMAT, "header: expected ':' after '%s'", key);
    if (strcmp(key, "descr") == 0) {
      char d[16];
      if (have_descr++) return resq_fail(RESQ_ERR_FORMAT, "header: duplicate key 'descr'");
      if (!parse_str(&c, d, sizeof d) || !d[0])
        return resq_fail(RESQ_ERR_FORMAT, "header: 'descr' must be a short type string (structured dtypes are not supported)");
      resq_status st = descr_to_dtype(d, &out->dtype);
      if (st) return st;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (have_fortran++) return resq_fail(RESQ_ERR_FORMAT, "header: duplicate key 'fortran_order'");
      if (parse_word(&c, "True")) *fortran = 1;
      else if (parse_word(&c, "False")) *fortran = 0;
      else return resq_fail(RESQ_ERR_FORMAT, "header: 'fortran_order' must be True or False");
    } else if (strcmp(key, "shape") == 0) {
      if (have_shape++) return resq_fail(RESQ_ERR_FORMAT, "header: duplicate key 'shape'");
      if (!accept(&c, '(')) return resq_fail(RESQ_ERR_FORMAT, "header: 'shape' must be a tuple");
      int nd = 0;
      for (;;) {
        if (accept(&c, ')')) break;
        int64_t v;
        if (!parse_dim(&c, &v)) return resq_fail(RESQ_ERR_FORMAT, "header: bad dimension in 'shape'");
        if (nd >= RESQ_NPY_MAX_DIM)
          return resq_fail(RESQ_ERR_UNSUPPORTED, "header: more than %d dimensions", RESQ_NPY_MAX_DIM);
        out->shape[nd++] = v;
        if (accept(&c, ',')) continue;
        if (accept(&c, ')')) break;
        return resq_fail(RESQ_ERR_FORMAT, "header: expected ',' or ')' in 'shape'");
      }
      out->ndim = nd;
    } else {
      return resq_fail(RESQ_ERR_FORMAT, "header: unexpected key '%s'", key);
    }
    if (accept(&c, ',')) continue;
    if (accept(&c, '}')) break;
    return resq_fail(RESQ_ERR_FORMAT, "header: expected ',' or '}'");
  }
  skip_ws(&c);
  if (c.p != c.end) return resq_fail(RESQ_ERR_FORMAT, "header: trailing characters after '}'");
  if (!have_descr || !have_fortran || !have_shape)
    return resq_fail(RESQ_ERR_FORMAT, "header: missing key '%s'",
                     !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
  return RESQ_OK;
}

/* Validate the preamble; report the data offset and the header span. */
/* `b` holds the first min(len, 12) bytes of an image of `len` bytes. */
static resq_status parse_preamble(const unsigned char *b, size_t len, size_t *hdr_off, size_t *hdr_len) {
  if (len < 10) return resq_fail(RESQ_ERR_FORMAT, "file too short for an NPY preamble (%zu bytes)", len);
  if (memcmp(b, k_magic, 6) != 0) return resq_fail(RESQ_ERR_FORMAT, "not an NPY file (bad magic)");
  unsigned major = b[6], minor = b[7];
  uint64_t hl;
  size_t off;
  if (major == 1) {
    hl = (uint64_t)b[8] | ((uint64_t)b[9] << 8);
    off = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return resq_fail(RESQ_ERR_FORMAT, "file too short for an NPY v%u preamble", major);
    hl = (uint64_t)b[8] | ((uint64_t)b[9] << 8) | ((uint64_t)b[10] << 16) | ((uint64_t)b[11] << 24);
    off = 12;
  } else {
    return resq_fail(RESQ_ERR_UNSUPPORTED, "NPY format version %u.%u (supported: 1.0, 2.0, 3.0)", major, minor);
  }
  if (minor != 0) return resq_fail(RESQ_ERR_UNSUPPORTED, "NPY format version %u.%u", major, minor);
  if (hl > RESQ_NPY_MAX_HEADER)
    return resq_fail(RESQ_ERR_FORMAT, "NPY header length %" PRIu64 " exceeds the %u-byte limit", hl,
                     RESQ_NPY_MAX_HEADER);
  if (hl > len - off)
    return resq_fail(RESQ_ERR_FORMAT, "truncated NPY header (%" PRIu64 " bytes declared, %zu present)", hl,
                     len - off);
  *hdr_off = off;
  *hdr_len = (size_t)hl;
  return RESQ_OK;
}

resq_status resq_npy_parse(const void *buf, size_t len, resq_array *out) {
  memset(out, 0, sizeof *out);
  const unsigned char *b = (const unsigned char *)buf;
  size_t hoff, hlen;
  resq_status st = parse_preamble(b, len, &hoff, &hlen);
  if (st) return st;
  resq_array a;
  memset(&a, 0, sizeof a);
  int fortran = 0;
  st = parse_header((const char *)b + hoff, hlen, &a, &fortran);
  if (st) return st;
  if (fortran) {
    int nontrivial = 0;
    for (int i = 0; i < a.ndim; i++) nontrivial += a.shape[i] > 1;
    if (nontrivial > 1) return resq_fail(RESQ_ERR_UNSUPPORTED, "Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  }
  uint64_t bytes;
  st = checked_size(a.dtype, a.ndim, a.shape, &bytes);
  if (st) return st;
  size_t data_off = hoff + hlen;
  uint64_t avail = (uint64_t)(len - data_off);
  if (avail < bytes)
    return resq_fail(RESQ_ERR_FORMAT, "truncated NPY data (%" PRIu64 " bytes expected, %" PRIu64 " present)",
                     bytes, avail);
  if (avail > bytes)
    return resq_fail(RESQ_ERR_FORMAT, "%" PRIu64 " unexpected trailing bytes after NPY data", avail - bytes);
  if (bytes) {
    a.data = malloc((size_t)bytes);
    if (!a.data) return resq_fail(RESQ_ERR_NOMEM, "cannot allocate %" PRIu64 " bytes", bytes);
    memcpy(a.data, b + data_off, (size_t)bytes);
  }
  a.nbytes = (size_t)bytes;
  *out = a;
  return RESQ_OK;
}

resq_status resq_npy_read(const char *path, resq_array *out) {
  memset(out, 0, sizeof *out);
  if (!path) return resq_fail(RESQ_ERR_INVALID_ARG, "NULL path");
  FILE *f = fopen(path, "rb");
  if (!f) return resq_fail(RESQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  long sz = -1;
  if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
  if (sz < 0) {
    fclose(f);
    return resq_fail(RESQ_ERR_IO, "%s: cannot determine the size (not a regular file?)", path);
  }
  rewind(f);
  /* Judge the preamble (magic, version, header length) against the size on disk
   * before allocating anything, so a file that claims a huge header is refused
   * without reading it. resq_npy_parse then re-checks every length. */
  unsigned char pre[12];
  size_t want = (size_t)sz < sizeof pre ? (size_t)sz : sizeof pre;
  size_t hoff, hlen;
  resq_status st = RESQ_OK;
  /* (a directory opens, and fails here with EISDIR: say so rather than "short read") */
  if (fread(pre, 1, want, f) != want)
    st = resq_fail(RESQ_ERR_IO, "read failed: %s", ferror(f) ? strerror(errno) : "short read");
  if (!st) st = parse_preamble(pre, (size_t)sz, &hoff, &hlen);
  unsigned char *img = NULL;
  if (!st) {
    img = (unsigned char *)malloc((size_t)sz);
    if (!img) st = resq_fail(RESQ_ERR_NOMEM, "cannot allocate %ld bytes", sz);
  }
  if (!st) {
    rewind(f);
    if (fread(img, 1, (size_t)sz, f) != (size_t)sz) st = resq_fail(RESQ_ERR_IO, "short read");
  }
  fclose(f);
  if (!st) st = resq_npy_parse(img, (size_t)sz, out);
  free(img);
  if (st) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", resq_last_error());
    return resq_fail(st, "%s: %s", path, msg);
  }
  return RESQ_OK;
}

static const char *dtype_descr(resq_dtype t) {
  switch (t) {
    case RESQ_DTYPE_F16: return "<f2";
    case RESQ_DTYPE_F32: return "<f4";
    case RESQ_DTYPE_F64: return "<f8";
    case RESQ_DTYPE_I8: return "|i1";
    case RESQ_DTYPE_U8: return "|u1";
    case RESQ_DTYPE_I16: return "<i2";
    case RESQ_DTYPE_U16: return "<u2";
    case RESQ_DTYPE_I32: return "<i4";
    case RESQ_DTYPE_I64: return "<i8";
    case RESQ_DTYPE_BF16: return "<V2";
    default: return NULL;
  }
}

resq_status resq_npy_header(resq_dtype t, int ndim, const int64_t *shape, char *buf, size_t cap,
                            size_t *len) {
  const char *d = dtype_descr(t);
  if (!d) return resq_fail(RESQ_ERR_INVALID_ARG, "cannot write dtype %s", resq_dtype_name(t));
  uint64_t bytes;
  resq_status st = checked_size(t, ndim, shape, &bytes);
  if (st) return st;
  char dict[512];
  int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", d);
  for (int i = 0; i < ndim; i++)
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%" PRId64 "%s", shape[i],
                  (ndim == 1 || i + 1 < ndim) ? ", " : "");
  if (ndim == 1) n -= 1; /* numpy writes "(5,)" */
  n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
  /* version 1 preamble is 10 bytes; pad with spaces so preamble+dict+'\n' % 64 == 0 */
  size_t body = (size_t)n + 1;
  size_t total = (10 + body + 63) / 64 * 64;
  if (total - 10 > 65535) return resq_fail(RESQ_ERR_INTERNAL, "header too long");
  if (cap < total) return resq_fail(RESQ_ERR_INVALID_ARG, "header buffer too small");
  memcpy(buf, k_magic, 6);
  buf[6] = 1;
  buf[7] = 0;
  size_t hl = total - 10;
  buf[8] = (char)(hl & 0xff);
  buf[9] = (char)(hl >> 8);
  memcpy(buf + 10, dict, (size_t)n);
  memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
  buf[total - 1] = '\n';
  *len = total;
  return RESQ_OK;
}

resq_status resq_npy_write(const char *path, resq_dtype t, int ndim, const int64_t *shape,
                           const void *data) {
  char hdr[640];
  size_t hlen;
  resq_status st = resq_npy_header(t, ndim, shape, hdr, sizeof hdr, &hlen);
  if (st) return st;
  uint64_t bytes;
  checked_size(t, ndim, shape, &bytes);
  if (bytes && !data) return resq_fail(RESQ_ERR_INVALID_ARG, "NULL data");
  FILE *f = fopen(path, "wb");
  if (!f) return resq_fail(RESQ_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  int ok = fwrite(hdr, 1, hlen, f) == hlen;
  if (ok && bytes) ok = fwrite(data, 1, (size_t)bytes, f) == (size_t)bytes;
  if (fclose(f) != 0) ok = 0;
  if (!ok) {
    int e = errno;
    remove(path);
    return resq_fail(RESQ_ERR_IO, "%s: write failed: %s", path, strerror(e));
  }
  return RESQ_OK;
}
