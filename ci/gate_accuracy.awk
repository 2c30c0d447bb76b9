# SPDX-License-Identifier: Apache-2.0
# The accuracy gate's comparison (ci/gate_accuracy.sh; rules in ci/README.md).
#   awk -F'\t' -f ci/gate_accuracy.awk BASELINE CURRENT
# Both files: stage backend case metric value n [repro], one header line.
# -v noavx512=1: baseline figures of the cpu-avx512 backend are not expected.
# Prints one line per regression (the case, old and new figure, the rule, a REPRO
# line), a summary, and exits 1 when anything regressed or disappeared.

function rule(stage, backend, metric) {
  if (metric ~ /_match(_ref)?$/ || metric == "eigvec_compared") return "count_hi";
  if (metric ~ /rows_differ$/) return "count_lo";
  if (metric ~ /_max_ulp$/) return "exact_lo";
  if (metric ~ /(relgap|top_r_energy)$/) return "two_sided";
  return "cont_lo";
}
# relative margin and absolute floor of the continuous rules (justified in ci/README.md)
function libbackend(stage, backend) { return backend ~ /^cpu-/ && (stage == "pca_f64" || stage == "gptq_f64"); }
function margin(stage, backend, metric) {
  if (stage == "layer") return 0.01;
  if (libbackend(stage, backend) && metric ~ /over_bound$/) return 3;
  if (libbackend(stage, backend) && metric ~ /^objective/) return 1e-3;
  return 1e-6;
}
function floor_of(stage, backend, metric) {
  if (libbackend(stage, backend) && metric ~ /over_bound$/) return 0.01;
  if (metric ~ /over_bound$|over_b1$/) return 1e-9;
  return 1e-15;
}
function absf(x) { return x < 0 ? -x : x; }

BEGIN { FS = "\t"; bad = 0; nb = 0; nc = 0; improved = 0; newm = 0; }
FNR == 1 { next; }
FNR == NR {
  k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4;
  if (!(k in base)) order[++nb] = k;
  base[k] = $5; bn[k] = $6;
  next;
}
{
  k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4;
  if (!(k in cur)) corder[++nc] = k;
  cur[k] = $5; cn[k] = $6; rep[k] = $7;
}
END {
  for (i = 1; i <= nb; i++) {
    k = order[i];
    split(k, f, SUBSEP);
    what = f[1] "/" f[3] " [" f[2] "] " f[4];
    if (!(k in cur) && noavx512 && f[2] == "cpu-avx512") { na++; continue; }
    if (!(k in cur)) {
      printf("REGRESSION %s: in the baseline (%s) but not measured now (a stage, case or backend stopped running)\n", what, base[k]);
      bad++;
      continue;
    }
    o = base[k] + 0; n = cur[k] + 0; r = rule(f[1], f[2], f[4]);
    fail = 0;
    if (bn[k] != cn[k]) {
      msg = sprintf("n changed %s -> %s (the case changed: review, then ci/gate_accuracy.sh --update)", bn[k], cn[k]);
      fail = 1;
    } else if (r == "count_hi") {
      if (n < o) { fail = 1; msg = sprintf("exact matches dropped %d -> %d of %s", o, n, cn[k]); }
      else if (n > o) improved++;
    } else if (r == "count_lo" || r == "exact_lo") {
      if (n > o) { fail = 1; msg = sprintf("rose %s -> %s (must not rise)", base[k], cur[k]); }
      else if (n < o) improved++;
    } else if (r == "two_sided") {
      m = margin(f[1], f[2], f[4]);
      if (absf(n - o) > m * absf(o) + floor_of(f[1], f[2], f[4])) {
        fail = 1; msg = sprintf("moved %s -> %s (allowed +-%g relative)", base[k], cur[k], m);
      }
    } else {
      m = margin(f[1], f[2], f[4]); fl = floor_of(f[1], f[2], f[4]);
      lim = o * (1 + m) + fl;
      if (!(n <= lim)) { fail = 1; msg = sprintf("rose %s -> %s (limit %.6g = old x (1 + %g) + %g)", base[k], cur[k], lim, m, fl); }
      else if (n < o * (1 - m) - fl) improved++;
    }
    if (fail) {
      printf("REGRESSION %s: %s\n  REPRO: %s\n", what, msg, rep[k]);
      bad++;
    }
  }
  for (i = 1; i <= nc; i++) {
    k = corder[i];
    if (!(k in base)) newm++;
  }
  printf("gate_accuracy: %d figures in the baseline, %d measured, %d regressions, %d improved, %d new (not in the baseline)\n",
         nb, nc, bad, improved, newm);
  if (na) printf("gate_accuracy: %d cpu-avx512 figures not applicable: this CPU has no AVX-512 VNNI\n", na);
  if (newm || improved) printf("gate_accuracy: new or improved figures: record them with ci/gate_accuracy.sh --update\n");
  exit bad ? 1 : 0;
}
