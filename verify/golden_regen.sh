#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The committed goldens are exactly what golden/gen_golden.py writes: regenerate
# into a temporary directory and compare the manifests (sha256 of every file).
# Needs Debian's python3-numpy (ci/test installs it); without it: exit 77 (skip)
# with the reason, which ci/test reports as skipped, not passed.
# usage: golden_regen.sh <golden-dir>
set -u
G=$1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "golden_regen: SKIPPED (exit 77): numpy is not importable by $PY (apt-get install python3-numpy)"
  exit 77
fi
T=$(mktemp -d /tmp/resq_regen.XXXXXX)
trap 'rm -rf "$T"' EXIT
"$PY" "$G/gen_golden.py" --out "$T" >/dev/null || { echo "FAIL: gen_golden.py failed"; exit 1; }
# the generator's own self-checks (bounds, independent scalar re-implementation, mutants)
"$PY" "$G/selfcheck.py" >"$T/selfcheck.log" 2>&1 || { tail -20 "$T/selfcheck.log"; echo "FAIL: golden/selfcheck.py"; exit 1; }
tail -1 "$T/selfcheck.log"
if diff "$G/MANIFEST.tsv" "$T/MANIFEST.tsv" >"$T/diff"; then
  echo "golden_regen: $(($(wc -l < "$G/MANIFEST.tsv") - 1)) files regenerated bit for bit (numpy $("$PY" -c 'import numpy; print(numpy.__version__)'))"
  exit 0
fi
echo "FAIL: regenerated goldens differ from the committed ones:"; head -20 "$T/diff"
echo "REPRO: $0 $G"
exit 1
