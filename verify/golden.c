/* SPDX-License-Identifier: Apache-2.0
 * golden/MANIFEST.tsv reader (columns: stage case file role dtype shape seed params sha256). */
#include "golden.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int split_tabs(char *line, char **f, int max) {
  int n = 0;
  char *p = line;
  while (n < max) {
    f[n++] = p;
    char *t = strchr(p, '\t');
    if (!t) break;
    *t = '\0';
    p = t + 1;
  }
  return n;
}

static int copy_field(char *dst, size_t cap, const char *src) {
  if (strlen(src) >= cap) return -1;
  strcpy(dst, src);
  return 0;
}

int golden_load(golden_manifest *m, const char *dir) {
  memset(m, 0, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  char path[1200];
  snprintf(path, sizeof path, "%s/MANIFEST.tsv", dir);
  FILE *f = fopen(path, "r");
  if (!f) {
    printf("golden: cannot open %s\n", path);
    return -1;
  }
  char line[2048];
  int lineno = 0, cap = 0, err = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t L = strlen(line);
    while (L && (line[L - 1] == '\n' || line[L - 1] == '\r')) line[--L] = '\0';
    if (lineno == 1 || L == 0) continue; /* header */
    char *fld[10];
    int nf = split_tabs(line, fld, 10);
    if (nf != 9) {
      printf("golden: %s:%d: %d columns, expected 9\n", path, lineno, nf);
      err = 1;
      break;
    }
    if (m->n == cap) {
      cap = cap ? 2 * cap : 64;
      golden_file *r = (golden_file *)realloc(m->rows, (size_t)cap * sizeof *r);
      if (!r) {
        err = 1;
        break;
      }
      m->rows = r;
    }
    golden_file *g = &m->rows[m->n];
    memset(g, 0, sizeof *g);
    if (copy_field(g->stage, sizeof g->stage, fld[0]) || copy_field(g->casename, sizeof g->casename, fld[1]) ||
        copy_field(g->file, sizeof g->file, fld[2]) || copy_field(g->role, sizeof g->role, fld[3]) ||
        copy_field(g->dtype, sizeof g->dtype, fld[4]) || copy_field(g->shape, sizeof g->shape, fld[5]) ||
        copy_field(g->params, sizeof g->params, fld[7]) || copy_field(g->sha256, sizeof g->sha256, fld[8])) {
      printf("golden: %s:%d: a field is too long\n", path, lineno);
      err = 1;
      break;
    }
    g->seed = strtoll(fld[6], NULL, 0);
    m->n++;
  }
  fclose(f);
  if (err) golden_free(m);
  return err ? -1 : 0;
}

void golden_free(golden_manifest *m) {
  free(m->rows);
  m->rows = NULL;
  m->n = 0;
}

int golden_param_str(const char *params, const char *key, char *out, size_t cap) {
  size_t kl = strlen(key);
  const char *p = params;
  while (p && *p) {
    const char *end = strchr(p, ';');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      size_t vl = len - kl - 1;
      if (vl >= cap) return -1;
      memcpy(out, p + kl + 1, vl);
      out[vl] = '\0';
      return 0;
    }
    p = end ? end + 1 : NULL;
  }
  return -1;
}

int golden_param_i64(const char *params, const char *key, long long *v) {
  char buf[64];
  if (golden_param_str(params, key, buf, sizeof buf)) return -1;
  char *end;
  *v = strtoll(buf, &end, 10);
  return *end ? -1 : 0;
}

int golden_read(const golden_manifest *m, const char *stage, const char *casename, const char *name,
                resq_array *a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < m->n; i++) {
    const golden_file *g = &m->rows[i];
    const char *base = strrchr(g->file, '/');
    base = base ? base + 1 : g->file;
    if (strcmp(g->stage, stage) || strcmp(g->casename, casename) || strcmp(base, name)) continue;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", m->dir, g->file);
    if (resq_npy_read(path, a)) {
      printf("golden: %s\n", resq_last_error());
      return -1;
    }
    char shp[96] = "";
    size_t off = 0;
    for (int d = 0; d < a->ndim; d++)
      off += (size_t)snprintf(shp + off, sizeof shp - off, "%s%lld", d ? "," : "", (long long)a->shape[d]);
    if (strcmp(resq_dtype_name(a->dtype), g->dtype) != 0 || strcmp(shp, g->shape) != 0) {
      printf("golden: %s: file is %s [%s], manifest says %s [%s]\n", path, resq_dtype_name(a->dtype), shp, g->dtype,
             g->shape);
      resq_array_free(a);
      return -1;
    }
    return 0;
  }
  return 1; /* not listed */
}

int golden_cases(const golden_manifest *m, const char *stage, const char **names, int cap) {
  int n = 0;
  for (int i = 0; i < m->n; i++) {
    if (strcmp(m->rows[i].stage, stage)) continue;
    int seen = 0;
    for (int k = 0; k < n && k < cap; k++) seen |= strcmp(names[k], m->rows[i].casename) == 0;
    if (!seen) {
      if (n < cap) names[n] = m->rows[i].casename;
      n++;
    }
  }
  return n;
}
