#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Static GPU resources gate: compile every CUDA source of cuda/src/ with the exact
# command CMake uses for it (compile_commands.json of a RESQ_CUDA=ON configure:
# same flags, -Xptxas=-v, every architecture of CMAKE_CUDA_ARCHITECTURES), parse
# ptxas's report per kernel and architecture, and compare with the committed
# tables cuda/PTXAS_*.tsv (columns: kernel arch registers spill_stores
# spill_loads smem_bytes; '#' lines are comments). Needs nvcc, not a GPU.
#
# FAIL when, for a (kernel, arch):
#   - spill_stores or spill_loads is above the committed value (a new spill);
#   - registers > committed + max(8, ceil(10% of committed)): register files are
#     allocated per warp in units of 256 = 8 per thread on sm_80..sm_90, so a
#     change inside one unit cannot change occupancy, and 10% covers the drift
#     between nvcc releases; anything above is a design change to review;
#   - static smem_bytes is above the committed value (static shared memory is a
#     design decision and exactly reproducible);
#   - the kernel is compiled but in no table, or in a table but no longer
#     compiled (a renamed kernel: update the table), or listed twice with
#     different figures.
# Lower figures pass and are reported (update the table to lock them in).
#
#   ci/gate_ptxas.sh                         compare (BUILD_DIR, default build-ptxas)
#   ci/gate_ptxas.sh --arch 90               only sm_90 (the quick CI form)
#   ci/gate_ptxas.sh [--arch A] SRC.cu...    only these sources (their kernels are compared;
#                                            table rows of other sources are not checked)
#   ci/gate_ptxas.sh --write TABLE SRC.cu... write TABLE from the kernels of SRC.cu...
#   ci/gate_ptxas.sh --parse LOG             print the table parsed from a ptxas -v log
#   ci/gate_ptxas.sh --log LOG               compare the figures of an existing log (e.g. the
#                                            output of a CUDA build) instead of compiling
# Kernel names are demangled (c++filt or cu++filt; template arguments included),
# so a table reads like the source. Environment: BUILD_DIR, JOBS, CUDACXX.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ARCH="" WRITE="" PARSE="" LOG=""
SRCS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=$2; shift ;;
    --write) WRITE=$2; shift; while [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; do SRCS+=("$2"); shift; done ;;
    --parse) PARSE=$2; shift ;;
    --log) LOG=$(realpath "$2"); shift ;;
    -h|--help) sed -n '3,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*) echo "gate_ptxas: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) SRCS+=("$1") ;;
  esac
  shift
done

# parse <log>: ptxas -v output (any number of files and archs) -> TSV rows
#   ptxas info    : Compiling entry function '_Z...' for 'sm_90'
#   ptxas info    : Function properties for _Z...
#       0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
#   ptxas info    : Used 40 registers, used 1 barriers, 8192 bytes smem, 400 bytes cmem[0]
# The properties line of an entry function comes before its "Used" line; the
# properties of non-entry (device) functions are ignored.
parse() {
  local filt=cat # nvcc mangles with the Itanium C++ ABI: binutils c++filt reads it (cu++filt too)
  command -v c++filt >/dev/null 2>&1 && filt=c++filt
  command -v cu++filt >/dev/null 2>&1 && filt=cu++filt
  awk '
    /Compiling entry function/ { match($0, /function \047[^\047]+\047/); k = substr($0, RSTART + 10, RLENGTH - 11)
                                 match($0, /for \047sm_[0-9a-z]+\047/); a = substr($0, RSTART + 5, RLENGTH - 6)
                                 cur = k; st = 0; ld = 0; inprops = 0; next }
    /Function properties for/ { f = $0; sub(/.*Function properties for /, "", f); inprops = (f == cur); next }
    /bytes spill stores/ && inprops { st = $0; sub(/ bytes spill stores.*/, "", st); sub(/.*, /, "", st)
                                      ld = $0; sub(/ bytes spill loads.*/, "", ld); sub(/.*stores, /, "", ld); next }
    /Used [0-9]+ registers/ && cur != "" {
      r = $0; sub(/.*Used /, "", r); sub(/ registers.*/, "", r)
      sm = 0; if ($0 ~ /bytes smem/) { sm = $0; sub(/ bytes smem.*/, "", sm); sub(/.*, /, "", sm) }
      printf "%s\t%s\t%d\t%d\t%d\t%d\n", cur, a, r, st, ld, sm; cur = "" }' "$1" |
    while IFS=$'\t' read -r k a r st ld sm; do
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$($filt <<<"$k")" "$a" "$r" "$st" "$ld" "$sm"
    done | sort -u
}
if [ -n "$PARSE" ]; then
  printf 'kernel\tarch\tregisters\tspill_stores\tspill_loads\tsmem_bytes\n'
  parse "$PARSE"
  exit 0
fi

# ---------------------------------------------------------------- compile with CMake's commands
W=$(mktemp -d /tmp/resq_gate_ptxas.XXXXXX)
trap 'rm -rf "$W"' EXIT
if [ -n "$LOG" ]; then
  parse "$LOG" >"$W/now.tsv"
  echo "gate_ptxas: $(wc -l <"$W/now.tsv") (kernel, arch) entries in $LOG"
else
BUILD_DIR=${BUILD_DIR:-build-ptxas${ARCH:+-sm$ARCH}}   # one per arch set: CMAKE_CUDA_ARCHITECTURES is cached
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
JOBS=${JOBS:-$(nproc)}
ARCH_OPT=()
[ -n "$ARCH" ] && ARCH_OPT=(-DCMAKE_CUDA_ARCHITECTURES="$ARCH")
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESQ_WERROR=ON -DRESQ_CUDA=ON -DRESQ_BUILD_BENCH=OFF \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "${ARCH_OPT[@]}" >"$BUILD_DIR.configure.log" 2>&1 \
  || { tail -20 "$BUILD_DIR.configure.log"; echo "gate_ptxas: configure with RESQ_CUDA=ON failed (nvcc?)" >&2; exit 1; }
NVCC_VERSION=$("${CUDACXX:-nvcc}" --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1 || true)

# compile_commands.json -> one "directory<TAB>command<TAB>file" line per cuda/src .cu
# (CMake writes one key per line; paths have no quotes or tabs)
awk '/"directory":/ { d = $0; sub(/^[^:]*: *"/, "", d); sub(/",?$/, "", d) }
     /"command":/   { c = $0; sub(/^[^:]*: *"/, "", c); sub(/",?$/, "", c); gsub(/\\"/, "\"", c) }
     /"file":/      { f = $0; sub(/^[^:]*: *"/, "", f); sub(/",?$/, "", f)
                      if (f ~ /\/cuda\/src\/[^\/]*\.cu$/) printf "%s\t%s\t%s\n", d, c, f }' \
  "$BUILD_DIR/compile_commands.json" | sort -t$'\t' -k3 >"$W/cmds.tsv"
if [ ${#SRCS[@]} -gt 0 ]; then # only the named sources
  : >"$W/sel.tsv"
  for s in "${SRCS[@]}"; do
    abs=$(realpath "$s"); awk -F'\t' -v f="$abs" '$3 == f' "$W/cmds.tsv" >>"$W/sel.tsv"
  done
  mv "$W/sel.tsv" "$W/cmds.tsv"
fi
[ -s "$W/cmds.tsv" ] || { echo "gate_ptxas: no CUDA source to compile" >&2; exit 1; }
nsrc=$(wc -l <"$W/cmds.tsv")
echo "gate_ptxas: compiling $nsrc CUDA source(s) with CMake's commands ($NVCC_VERSION, archs ${ARCH:-from CMakeLists}, $JOBS jobs)"
t0=$(date +%s)
i=0
while IFS=$'\t' read -r dir cmd file; do
  i=$((i + 1))
  # the object goes to the scratch directory; ptxas -v writes to stderr
  cmd=$(printf '%s' "$cmd" | sed -E "s# -o [^ ]+# -o $W/obj.$i.o#")
  printf '%s\0%s\0%s\0' "$dir" "$cmd" "$W/ptxas.$i.log"
done <"$W/cmds.tsv" | xargs -0 -n 3 -P "$JOBS" sh -c 'cd "$1" && eval "$2" >"$3" 2>&1 || { echo "gate_ptxas: compile failed:"; cat "$3"; exit 255; }' _
cat "$W"/ptxas.*.log >"$W/all.log"
parse "$W/all.log" >"$W/now.tsv"
echo "gate_ptxas: $(wc -l <"$W/now.tsv") (kernel, arch) entries in $(( $(date +%s) - t0 ))s"

if [ -n "$WRITE" ]; then
  {
    echo "# ptxas -v per kernel and architecture, written by ci/gate_ptxas.sh --write from: ${SRCS[*]}"
    echo "# nvcc: $NVCC_VERSION; flags: cuda/CMakeLists.txt (compile_commands.json). Compiled only: no GPU was needed or used."
    printf 'kernel\tarch\tregisters\tspill_stores\tspill_loads\tsmem_bytes\n'
    cat "$W/now.tsv"
  } >"$WRITE"
  echo "gate_ptxas: wrote $WRITE"
  exit 0
fi
fi # compile

# ---------------------------------------------------------------- compare
shopt -s nullglob
TABLES=(cuda/PTXAS_*.tsv)
[ ${#TABLES[@]} -gt 0 ] || { echo "gate_ptxas: no committed table cuda/PTXAS_*.tsv" >&2; exit 1; }
for t in "${TABLES[@]}"; do awk -F'\t' -v OFS='\t' -v t="$(basename "$t")" '!/^#/ && $1 != "kernel" && NF >= 6 { print $0, t }' "$t"; done >"$W/base.tsv"
awk -F'\t' -v arch="$ARCH" -v now="$W/now.tsv" -v subset=${#SRCS[@]} '
  function key(k, a) { return k SUBSEP a }
  BEGIN { while ((getline l < now) > 0) { split(l, f, "\t"); K = key(f[1], f[2]); nr[K] = f[3]; ns[K] = f[4]; nl[K] = f[5]; nm[K] = f[6]; seen_now[K] = 1 } }
  {
    if (arch != "" && $2 != "sm_" arch) next
    K = key($1, $2)
    if (K in br && (br[K] != $3 || bs[K] != $4 || bl[K] != $5 || bm[K] != $6)) {
      printf "FAIL %s %s: listed twice with different figures (%s and %s)\n", $1, $2, tab[K], $7; bad++; next }
    br[K] = $3; bs[K] = $4; bl[K] = $5; bm[K] = $6; tab[K] = $7; kn[K] = $1; ka[K] = $2
  }
  END {
    for (K in br) {
      if (!(K in seen_now) && subset) continue
      if (!(K in seen_now)) { printf "FAIL %s %s: in %s but no longer compiled (renamed or removed? update the table)\n", kn[K], ka[K], tab[K]; bad++; continue }
      n++; msg = ""
      lim = br[K] + ((br[K] * 0.10 > 8) ? int(br[K] * 0.10 + 0.999) : 8)
      if (ns[K] > bs[K] || nl[K] > bl[K]) msg = msg sprintf("; new spills: stores %d -> %d, loads %d -> %d", bs[K], ns[K], bl[K], nl[K])
      if (nr[K] > lim) msg = msg sprintf("; registers %d -> %d (allowed up to %d)", br[K], nr[K], lim)
      if (nm[K] > bm[K]) msg = msg sprintf("; static smem %d -> %d bytes", bm[K], nm[K])
      if (msg != "") { printf "FAIL %s %s (%s)%s\n", kn[K], ka[K], tab[K], msg; bad++ }
      else if (nr[K] != br[K] || nm[K] != bm[K] || ns[K] != bs[K] || nl[K] != bl[K]) {
        printf "ok   %s %s: registers %d -> %d, spills %d/%d -> %d/%d, smem %d -> %d (within the margins; %s keeps the committed figures)\n",
               kn[K], ka[K], br[K], nr[K], bs[K], bl[K], ns[K], nl[K], bm[K], nm[K], tab[K]; changed++ }
    }
    for (K in seen_now) if (!(K in br)) { split(K, p, SUBSEP); printf "FAIL %s %s: compiled but in no cuda/PTXAS_*.tsv table (add it: ci/gate_ptxas.sh --write)\n", p[1], p[2]; bad++ }
    printf "gate_ptxas: %d (kernel, arch) entries compared, %d changed within the margins, %d failure(s)\n", n, changed, bad
    if (bad) print "REPRO: ci/gate_ptxas.sh" (arch != "" ? " --arch " arch : "") "   # compile-only, needs nvcc"
    exit bad > 0 || n == 0 }' "$W/base.tsv"
