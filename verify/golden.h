/* SPDX-License-Identifier: Apache-2.0
 * verify/golden.h -- reading golden/MANIFEST.tsv and the case files it lists. */
#ifndef RESQ_VERIFY_GOLDEN_H
#define RESQ_VERIFY_GOLDEN_H

#include "resq/npy.h"

typedef struct golden_file {
  char stage[64], casename[96], file[256], role[8], dtype[8], shape[96], params[512], sha256[65];
  long long seed;
} golden_file;

typedef struct golden_manifest {
  golden_file *rows;
  int n;
  char dir[1024];
} golden_manifest;

/* Load <dir>/MANIFEST.tsv (0 on success; prints the problem otherwise). */
int golden_load(golden_manifest *m, const char *dir);
void golden_free(golden_manifest *m);

/* Look up integer/string parameter `key` in "k=v;k=v" params. Returns 0 if found. */
int golden_param_i64(const char *params, const char *key, long long *v);
int golden_param_str(const char *params, const char *key, char *out, size_t cap);

/* Read file `name` (e.g. "x.npy") of case (stage, casename); checks that its
 * dtype and shape are the ones the manifest records. 0 on success. */
int golden_read(const golden_manifest *m, const char *stage, const char *casename, const char *name,
                resq_array *a);
/* Number of distinct cases of a stage; case names into `names` (up to cap). */
int golden_cases(const golden_manifest *m, const char *stage, const char **names, int cap);

#endif
