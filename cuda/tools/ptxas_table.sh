#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ptxas resource table of CUDA kernels, from `ptxas -v` output (-Xptxas=-v, set on resq_cuda).
#
#   cuda/tools/ptxas_table.sh [-k KERNEL_REGEX] LOG...        parse build logs (or stdin)
#   cuda/tools/ptxas_table.sh [-k KERNEL_REGEX] -b BUILD_DIR -s SOURCE_REGEX
#        recompile the resq_cuda sources whose path matches SOURCE_REGEX with the exact commands
#        ninja would run (ninja -t commands), capture ptxas's report, and parse it
#
# Output (stdout): a TSV with one header line and one row per (kernel, architecture), sorted:
#   kernel  arch  registers  spill_stores  spill_loads  smem_bytes
# kernel: the entry name as ptxas prints it (demangled with c++filt when available);
# arch: sm_XX; registers: "Used N registers"; spill_stores / spill_loads: bytes ("N bytes spill
# stores, M bytes spill loads"); smem_bytes: STATIC shared memory ("N bytes smem", 0 when ptxas
# prints none) -- dynamic shared memory requested at launch is not known to ptxas (the GEMM's
# pipeline buffers are dynamic: see cuda/NOTES.md).
# Only entry functions ("Compiling entry function") are listed; KERNEL_REGEX (grep -E) filters
# them (default: all). The mixed GEMM's committed table is cuda/PTXAS_gemm.tsv:
#   cuda/tools/ptxas_table.sh -k 'gemm' -b build -s 'resq_gemm_q4q8' > cuda/PTXAS_gemm.tsv
set -euo pipefail

kre='.'
build=''
sre=''
while getopts 'k:b:s:h' opt; do
  case $opt in
    k) kre=$OPTARG ;;
    b) build=$OPTARG ;;
    s) sre=$OPTARG ;;
    *) sed -n '3,20p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -n "$build" ]; then
  [ -n "$sre" ] || { echo "ptxas_table.sh: -b needs -s SOURCE_REGEX" >&2; exit 2; }
  cmds=$(ninja -C "$build" -t commands cuda/libresq_cuda.a | grep -E -- '-c [^ ]*('"$sre"')[^ ]*\.cu' || true)
  [ -n "$cmds" ] || { echo "ptxas_table.sh: no resq_cuda source matches '$sre' in $build" >&2; exit 1; }
  # ninja prints commands relative to the build directory
  (cd "$build" && while IFS= read -r c; do
     # compile to a scratch object: the build tree is left untouched
     c=$(printf '%s' "$c" | sed -E 's/ -o [^ ]+/ -o \/dev\/null/')
     bash -c "$c" 2>&1 || { echo "ptxas_table.sh: compile failed: $c" >&2; exit 1; }
   done <<<"$cmds") >"$log"
elif [ $# -gt 0 ]; then
  cat "$@" >"$log"
else
  cat >"$log"
fi

demangle=cat
command -v c++filt >/dev/null 2>&1 && demangle='c++filt'

printf 'kernel\tarch\tregisters\tspill_stores\tspill_loads\tsmem_bytes\n'
awk -F'\t' '
  /Compiling entry function/ {
    match($0, /function \047[^\047]+\047/); k = substr($0, RSTART + 10, RLENGTH - 11)
    match($0, /for \047sm_[0-9a-z]+\047/); a = substr($0, RSTART + 5, RLENGTH - 6)
    st = 0; ld = 0; inentry = 1; next
  }
  inentry && /bytes spill stores/ {
    match($0, /[0-9]+ bytes spill stores/); st = substr($0, RSTART, RLENGTH) + 0
    match($0, /[0-9]+ bytes spill loads/); ld = substr($0, RSTART, RLENGTH) + 0
    next
  }
  inentry && /Used [0-9]+ registers/ {
    match($0, /Used [0-9]+ registers/); r = substr($0, RSTART + 5, RLENGTH - 15) + 0
    sm = 0
    if (match($0, /[0-9]+ bytes smem/)) sm = substr($0, RSTART, RLENGTH) + 0
    printf "%s\t%s\t%d\t%d\t%d\t%d\n", k, a, r, st, ld, sm
    inentry = 0
  }
' "$log" | $demangle | awk -F'\t' -v re="$kre" '$1 ~ re' | sort -u -t $'\t' -k1,1 -k2,2
