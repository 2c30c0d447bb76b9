/* SPDX-License-Identifier: Apache-2.0
 * Internal: the hard-coded +-1 Hadamard matrices of non-power-of-two order. */
#ifndef RESQ_HADAMARD_TABLES_H
#define RESQ_HADAMARD_TABLES_H

#define RESQ_HAD_NTABLES 12

typedef struct resq_had_table {
  int order;
  const char *const *rows; /* order strings of order chars, '+' or '-' */
} resq_had_table;

/* Sorted by order ascending (12 .. 172). */
extern const resq_had_table resq_had_tables[RESQ_HAD_NTABLES];

#endif
