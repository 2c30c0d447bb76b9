/* SPDX-License-Identifier: Apache-2.0
 * Shared pieces of the `resq` command: option parsing, input loading and the
 * all-or-nothing output set. */
#ifndef RESQ_CLI_UTIL_H
#define RESQ_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "resq/npy.h"

/* exit statuses */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef enum { OPT_STR, OPT_INT, OPT_FLOAT, OPT_FLAG } cli_opt_kind;

typedef struct cli_opt {
  const char *name; /* without the leading "--" */
  cli_opt_kind kind;
  void *dest;       /* const char**, int64_t*, float*, int* */
  int required;
  int64_t min, max; /* OPT_INT range */
  int seen;
} cli_opt;

/* Parse "--name value" / "--name=value" / "--flag". Prints one line and returns
 * CLI_USAGE on an unknown, repeated, malformed or missing option; returns -1
 * if --help/-h was given (caller prints help, exits 0). */
int cli_parse(const char *stage, int argc, char **argv, cli_opt *opts, int nopts);

/* One-line error: "resq <stage>: error: <msg>" on stderr. Returns `code`. */
int cli_error(const char *stage, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Load an NPY whose elements are 16-bit or 32-bit floats: f16, f32, bf16 (V2)
 * or u16 (taken as bf16 bit patterns). Anything else is refused. */
int cli_load_float(const char *stage, const char *what, const char *path, resq_array *a);
/* Load an NPY of int8 values. */
int cli_load_i8(const char *stage, const char *what, const char *path, resq_array *a);
/* Widen any accepted float array to a newly allocated fp32 buffer. */
float *cli_to_f32(const resq_array *a);

/* Refuse (one error line, CLI_FAIL) an array of rows x cols elements of `item`
 * bytes that is larger than RESQ_NPY_MAX_BYTES -- the largest array the suite
 * reads or writes -- before anything is allocated for it; the size arithmetic
 * cannot overflow. `what` names the array in the message. */
int cli_check_size(const char *stage, const char *what, int64_t rows, int64_t cols, size_t item);

/* All-or-nothing outputs: each file is written to "<dir>/.<name>.tmp.<pid>"
 * and renamed to "<dir>/<name>" by cli_out_commit only when every output was
 * written; cli_out_abort removes the temporaries (and the directory if this
 * run created it). A commit that fails restores the files it was replacing:
 * a failed run never loses the outputs of an earlier one. */
#define CLI_MAX_OUT 16
typedef struct cli_outset {
  const char *stage;
  char dir[2048];
  int created_dir;
  int n;
  char final_path[CLI_MAX_OUT][2304];
  char tmp_path[CLI_MAX_OUT][2304];
} cli_outset;

int cli_out_open(cli_outset *o, const char *stage, const char *dir);
int cli_out_add(cli_outset *o, const char *name, resq_dtype t, int ndim, const int64_t *shape,
                const void *data);
int cli_out_commit(cli_outset *o);
void cli_out_abort(cli_outset *o);

#endif
