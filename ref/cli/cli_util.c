/* SPDX-License-Identifier: Apache-2.0
 * Option parsing, input loading and the all-or-nothing output set of `resq`. */
#define _POSIX_C_SOURCE 200809L
#include "cli_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resq/dtype.h"

int cli_error(const char *stage, int code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "resq %s: error: %s\n", stage, msg);
  return code;
}

static int parse_value(const char *stage, cli_opt *o, const char *v) {
  char *end = NULL;
  errno = 0;
  switch (o->kind) {
    case OPT_STR:
      if (!*v) return cli_error(stage, CLI_USAGE, "--%s: empty value", o->name);
      *(const char **)o->dest = v;
      return CLI_OK;
    case OPT_INT: {
      long long x = strtoll(v, &end, 0);
      if (errno || !end || *end || end == v)
        return cli_error(stage, CLI_USAGE, "--%s: '%s' is not an integer", o->name, v);
      if (x < o->min || x > o->max)
        return cli_error(stage, CLI_USAGE, "--%s: %lld is outside [%lld, %lld]", o->name, x, (long long)o->min,
                         (long long)o->max);
      *(int64_t *)o->dest = x;
      return CLI_OK;
    }
    case OPT_FLOAT: {
      float x = strtof(v, &end);
      if (errno || !end || *end || end == v || !isfinite(x))
        return cli_error(stage, CLI_USAGE, "--%s: '%s' is not a finite number", o->name, v);
      *(float *)o->dest = x;
      return CLI_OK;
    }
    case OPT_FLAG:
      return cli_error(stage, CLI_USAGE, "--%s takes no value", o->name);
  }
  return CLI_USAGE;
}

int cli_parse(const char *stage, int argc, char **argv, cli_opt *opts, int nopts) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return -1;
    if (strncmp(a, "--", 2) != 0)
      return cli_error(stage, CLI_USAGE, "unexpected argument '%s' (inputs are given as --name FILE)", a);
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    cli_opt *o = NULL;
    for (int k = 0; k < nopts; k++)
      if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0) o = &opts[k];
    if (!o) return cli_error(stage, CLI_USAGE, "unknown option '%.*s' (see resq %s --help)", (int)(len + 2), a, stage);
    if (o->seen++) return cli_error(stage, CLI_USAGE, "option --%s given twice", o->name);
    if (o->kind == OPT_FLAG) {
      if (eq) return cli_error(stage, CLI_USAGE, "--%s takes no value", o->name);
      *(int *)o->dest = 1;
      continue;
    }
    const char *v = eq ? eq + 1 : NULL;
    if (!v) {
      if (i + 1 >= argc) return cli_error(stage, CLI_USAGE, "--%s needs a value", o->name);
      v = argv[++i];
    }
    int rc = parse_value(stage, o, v);
    if (rc) return rc;
  }
  for (int k = 0; k < nopts; k++)
    if (opts[k].required && !opts[k].seen)
      return cli_error(stage, CLI_USAGE, "missing required option --%s (see resq %s --help)", opts[k].name, stage);
  return CLI_OK;
}

int cli_load_float(const char *stage, const char *what, const char *path, resq_array *a) {
  resq_status st = resq_npy_read(path, a);
  if (st) return cli_error(stage, CLI_FAIL, "%s: %s", what, resq_last_error());
  if (a->dtype == RESQ_DTYPE_U16) a->dtype = RESQ_DTYPE_BF16; /* documented bf16 convention */
  if (a->dtype != RESQ_DTYPE_F16 && a->dtype != RESQ_DTYPE_F32 && a->dtype != RESQ_DTYPE_BF16) {
    int rc = cli_error(stage, CLI_FAIL, "%s: %s: dtype %s is not accepted (f16, f32, or bf16 as <V2/<u2)", what,
                       path, resq_dtype_name(a->dtype));
    resq_array_free(a);
    return rc;
  }
  return CLI_OK;
}

int cli_load_i8(const char *stage, const char *what, const char *path, resq_array *a) {
  resq_status st = resq_npy_read(path, a);
  if (st) return cli_error(stage, CLI_FAIL, "%s: %s", what, resq_last_error());
  if (a->dtype != RESQ_DTYPE_I8) {
    int rc = cli_error(stage, CLI_FAIL, "%s: %s: dtype %s, expected i8", what, path, resq_dtype_name(a->dtype));
    resq_array_free(a);
    return rc;
  }
  return CLI_OK;
}

float *cli_to_f32(const resq_array *a) {
  int64_t n = resq_array_numel(a);
  float *f = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  if (!f) return NULL;
  for (int64_t i = 0; i < n; i++) {
    if (a->dtype == RESQ_DTYPE_F32) f[i] = ((const float *)a->data)[i];
    else if (a->dtype == RESQ_DTYPE_F16) f[i] = resq_f16_to_f32(((const uint16_t *)a->data)[i]);
    else f[i] = resq_bf16_to_f32(((const uint16_t *)a->data)[i]);
  }
  return f;
}

int cli_check_size(const char *stage, const char *what, int64_t rows, int64_t cols, size_t item) {
  if (rows < 0 || cols < 0) return cli_error(stage, CLI_FAIL, "%s: negative size [%lld, %lld]", what, (long long)rows, (long long)cols);
  if (rows == 0 || cols == 0) return CLI_OK;
  /* rows * cols * item <= limit, tested by division so nothing overflows */
  if ((uint64_t)rows > RESQ_NPY_MAX_BYTES / item / (uint64_t)cols)
    return cli_error(stage, CLI_FAIL, "%s [%lld, %lld] of %zu-byte elements exceeds the %llu-byte array limit; refused before allocating",
                     what, (long long)rows, (long long)cols, item, (unsigned long long)RESQ_NPY_MAX_BYTES);
  return CLI_OK;
}

int cli_out_open(cli_outset *o, const char *stage, const char *dir) {
  memset(o, 0, sizeof *o);
  o->stage = stage;
  if (strlen(dir) >= sizeof o->dir - 64) return cli_error(stage, CLI_USAGE, "--out: path too long");
  snprintf(o->dir, sizeof o->dir, "%s", dir);
  struct stat sb;
  if (stat(dir, &sb) != 0) {
    if (errno != ENOENT) return cli_error(stage, CLI_FAIL, "--out %s: %s", dir, strerror(errno));
    if (mkdir(dir, 0777) != 0)
      return cli_error(stage, CLI_FAIL, "--out %s: cannot create directory: %s", dir, strerror(errno));
    o->created_dir = 1;
  } else if (!S_ISDIR(sb.st_mode)) {
    return cli_error(stage, CLI_FAIL, "--out %s: exists and is not a directory", dir);
  }
  if (access(dir, W_OK | X_OK) != 0) {
    int rc = cli_error(stage, CLI_FAIL, "--out %s: directory is not writable: %s", dir, strerror(errno));
    cli_out_abort(o);
    return rc;
  }
  return CLI_OK;
}

int cli_out_add(cli_outset *o, const char *name, resq_dtype t, int ndim, const int64_t *shape,
                const void *data) {
  if (o->n >= CLI_MAX_OUT) return cli_error(o->stage, CLI_FAIL, "internal: too many outputs");
  int i = o->n;
  snprintf(o->final_path[i], sizeof o->final_path[i], "%s/%s", o->dir, name);
  snprintf(o->tmp_path[i], sizeof o->tmp_path[i], "%s/.%s.tmp.%ld", o->dir, name, (long)getpid());
  o->n++;
  resq_status st = resq_npy_write(o->tmp_path[i], t, ndim, shape, data);
  if (st) return cli_error(o->stage, CLI_FAIL, "writing %s: %s", name, resq_last_error());
  return CLI_OK;
}

/* Put back the earlier outputs moved aside by cli_out_commit (old[k] -> final[k]). */
static void restore_old(cli_outset *o, char (*old)[2320], const int *had_old) {
  for (int k = 0; k < o->n; k++)
    if (had_old[k]) rename(old[k], o->final_path[k]);
}

int cli_out_commit(cli_outset *o) {
  char old[CLI_MAX_OUT][2320]; /* "<tmp>.old": where an earlier output waits during the commit */
  int had_old[CLI_MAX_OUT] = {0};
  struct stat sb;
  /* 1. A final name that is a directory cannot be replaced by rename: refuse before touching anything. */
  for (int i = 0; i < o->n; i++)
    if (lstat(o->final_path[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
      int rc = cli_error(o->stage, CLI_FAIL, "cannot write %s: it exists and is a directory", o->final_path[i]);
      cli_out_abort(o);
      return rc;
    }
  /* 2. Move earlier outputs of the same names aside, so a failed rename below can restore them. */
  for (int i = 0; i < o->n; i++) {
    snprintf(old[i], sizeof old[i], "%s.old", o->tmp_path[i]);
    if (lstat(o->final_path[i], &sb) != 0) continue;
    if (rename(o->final_path[i], old[i]) != 0) {
      int rc = cli_error(o->stage, CLI_FAIL, "cannot move the earlier %s aside: %s", o->final_path[i], strerror(errno));
      restore_old(o, old, had_old);
      cli_out_abort(o);
      return rc;
    }
    had_old[i] = 1;
  }
  /* 3. The new outputs take their final names. */
  for (int i = 0; i < o->n; i++) {
    if (rename(o->tmp_path[i], o->final_path[i]) != 0) {
      int rc = cli_error(o->stage, CLI_FAIL, "cannot rename %s to %s: %s", o->tmp_path[i], o->final_path[i],
                         strerror(errno));
      /* undo the renames already done, put the earlier outputs back, drop the rest */
      for (int k = 0; k < i; k++) remove(o->final_path[k]);
      restore_old(o, old, had_old);
      for (int k = i; k < o->n; k++) remove(o->tmp_path[k]);
      o->n = 0;
      if (o->created_dir) rmdir(o->dir);
      return rc;
    }
  }
  /* 4. Committed: the earlier outputs go. */
  for (int i = 0; i < o->n; i++)
    if (had_old[i]) remove(old[i]);
  return CLI_OK;
}

void cli_out_abort(cli_outset *o) {
  for (int i = 0; i < o->n; i++) remove(o->tmp_path[i]);
  o->n = 0;
  if (o->created_dir) rmdir(o->dir);
  o->created_dir = 0;
}
