#!/usr/bin/env bash
# Regenerate ref/src/hadamard_tables.c from the upstream Hadamard matrices
# (one row per line, '+' = +1, '-' = -1). Usage:
#   ref/tools/gen_hadamard_tables.sh ../shared/data/hadamard > ref/src/hadamard_tables.c
# verify/ checks the committed table against those files when they are present
# and checks M M^T = K I exactly for every order in any case.
set -euo pipefail
dir=${1:?usage: $0 <dir with had<K>.txt>}
orders="12 20 28 36 40 44 52 60 108 140 156 172"
cat <<HDR
/* Auto-generated file. Do not edit!
 * Generator: ref/tools/gen_hadamard_tables.sh
 * Source:    had<K>.txt of the upstream ResQ/QuaRot hadamard_utils.py matrices
 * One string per matrix row; '+' is +1, '-' is -1. */
#include "hadamard_tables.h"

HDR
for k in $orders; do
  f="$dir/had$k.txt"
  rows=$(grep -c . "$f")
  [ "$rows" -eq "$k" ] || { echo "$f: $rows rows, expected $k" >&2; exit 1; }
  echo "static const char *const had$k[$k] = {"
  awk -v k="$k" '{ if (length($0) != k || $0 ~ /[^+-]/) { print FILENAME ": bad row " NR > "/dev/stderr"; exit 1 } printf "    \"%s\",\n", $0 }' "$f"
  echo "};"
  echo
done
echo "const resq_had_table resq_had_tables[RESQ_HAD_NTABLES] = {"
for k in $orders; do echo "    {$k, had$k},"; done
echo "};"
