#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/report/charts.sh -- gnuplot charts (PNG and SVG) from the report's TSV
# tables; a chart is drawn only when its table exists. Called by bench/run_all
# with OUT (report directory) and RPT (this directory) in the environment.
#   charts/stages_gbps          GB/s vs rows, one panel per stage and backend, one
#                               line per configuration (solid) and the memcpy of the
#                               same bytes (dashed)
#   charts/stages_vs_memcpy     stage speed / memcpy speed vs rows, same panels
#   charts/gemm_gops_<model>    GOPS vs M, one panel per layer shape of the model
#   charts/gemm_speedup_<model> ratio to the 16-bit baseline vs M, same panels
#   charts/gemm_resq_speedup    the ResQ GEMMs' speedup over oneDNN bf16 and int8 vs M (median over shapes)
#   charts/layer_speedup        decoder layer: ResQ vs 16-bit, prefill and decode vs batch
#   charts/layer_error          resq layer-error: ResQ vs QuaRot-style vs RTN (median over seeds)
#   charts/layer_error_outliers the same against the outlier channels' magnitude (full mode)
#   charts/roofline             GOPS vs arithmetic intensity, with the measured roofs
#   charts/roofline_fraction    fraction of the attainable roofline vs M (median over shapes)
set -euo pipefail
: "${OUT:?}" "${RPT:?}"
C="$OUT/charts"
D="$C/data"
mkdir -p "$D"
LOG="$OUT/raw/gnuplot.log"
: >"$LOG"

# render <name> <width> <height>: $D/<name>.gp -> $C/<name>.png and .svg
render() {
  local name=$1 w=$2 h=$3 ok=0
  gnuplot -e "set terminal pngcairo noenhanced size $w,$h font 'sans,10'; set output '$C/$name.png'" \
    "$D/$name.gp" >>"$LOG" 2>&1 || ok=1
  gnuplot -e "set terminal svg noenhanced size $w,$h dynamic font 'sans,10'; set output '$C/$name.svg'" \
    "$D/$name.gp" >>"$LOG" 2>&1 || ok=1
  if [ "$ok" = 0 ]; then echo "  charts/$name.png .svg"; else echo "  charts/$name: gnuplot failed (raw/gnuplot.log)"; fi
}

# layout <n>: "rows cols width height" for n panels of 560x400
layout() {
  local n=$1 cols rows
  cols=$(( n < 3 ? n : (n == 4 ? 2 : 3) ))
  rows=$(( (n + cols - 1) / cols ))
  local w=$((cols * 560))
  [ "$w" -lt 720 ] && w=720
  echo "$rows $cols $w $((rows * 440 + 30))"
}

# ---------------------------------------------------------------- stages
# one panel per stage and backend, one line per configuration (width, split)
if [ -s "$OUT/stages_vs_memcpy.tsv" ]; then
  for kind in gbps ratio; do
    awk -F'\t' -v D="$D" -v kind="$kind" '
      NR == 1 { next }
      {
        p = $1 "__" $2
        if (!(p in pid)) { pid[p] = ++np; pname[np] = p }
        s = p " " $3
        if (!(s in sid)) { sid[s] = ++ns; spanel[ns] = pid[p]; scfg[ns] = $3 }
        k = sid[s]; n = ++cnt[k]
        X[k, n] = $5; Y[k, n] = $7; Z[k, n] = $8; V[k, n] = $9
      }
      END {
        for (k = 1; k <= ns; k++) {
          f = D "/stages_" k ".dat"
          for (i = 2; i <= cnt[k]; i++)  # sort by rows
            for (j = i; j > 1 && X[k, j - 1] + 0 > X[k, j] + 0; j--) {
              t = X[k, j]; X[k, j] = X[k, j - 1]; X[k, j - 1] = t
              t = Y[k, j]; Y[k, j] = Y[k, j - 1]; Y[k, j - 1] = t
              t = Z[k, j]; Z[k, j] = Z[k, j - 1]; Z[k, j - 1] = t
              t = V[k, j]; V[k, j] = V[k, j - 1]; V[k, j - 1] = t
            }
          printf "" > f
          for (i = 1; i <= cnt[k]; i++) print X[k, i], Y[k, i], Z[k, i], V[k, i] > f
          close(f)
        }
        # the key below each panel, 2 columns: its rows (the most entries of any
        # panel, + the memcpy entry of the ratio chart) set the bottom margin, so
        # a long key does not run over the x label or off the canvas
        for (k = 1; k <= ns; k++) if (++ent[spanel[k]] > maxent) maxent = ent[spanel[k]]
        keyrows = int((maxent + (kind == "ratio") + 1) / 2)
        print np, keyrows > (D "/stages_npanels")
        g = D "/stages_" kind ".gp"
        cols = np < 3 ? np : (np == 4 ? 2 : 3); rows = int((np + cols - 1) / cols)
        printf "set multiplot layout %d,%d title \"%s\"\n", rows, cols,
          (kind == "gbps" ? "Activation stages: GB/s (solid) and memcpy of the same bytes (dashed, same color)" \
                          : "Activation stages: stage GB/s / memcpy GB/s of the same bytes") > g
        # bmargin in lines of the 10-point font; a key row of the 8-point font is ~0.85 of one
        printf "set logscale x 2; set logscale y; set format y \"%%g\"; set grid; set key below horizontal maxcols 2 font \",8\"; set bmargin %d\n", 4 + int(keyrows * 0.85 + 0.99) > g
        print "set xlabel \"rows (tokens)\"" > g
        print (kind == "gbps" ? "set ylabel \"GB/s (inputs + outputs)\"" : "set ylabel \"stage / memcpy\"") > g
        for (q = 1; q <= np; q++) {
          printf "set title \"%s\"\n", pname[q] > g
          cmd = ""; c = 0
          for (k = 1; k <= ns; k++) {
            if (spanel[k] != q) continue
            c++
            f = D "/stages_" k ".dat"
            # gnuplot has 8 default colours: lines 9.. reuse them with squares (and,
            # on the ratio chart, dashes) so no two lines of a panel look alike
            pt = c > 8 ? 5 : 7; lt = c > 8 ? 2 : 1
            if (kind == "gbps")
              cmd = cmd (cmd == "" ? "" : ", ") sprintf("\"%s\" u 1:2 w lp lc %d pt %d lw 2 t \"%s\", \"%s\" u 1:3 w l lc %d dt 2 notitle", f, c, pt, scfg[k], f, c)
            else
              cmd = cmd (cmd == "" ? "" : ", ") sprintf("\"%s\" u 1:4 w lp lc %d pt %d dt %d lw 2 t \"%s\"", f, c, pt, lt, scfg[k])
          }
          if (kind == "ratio") cmd = cmd ", 1 w l lc rgb \"black\" dt 3 t \"memcpy\""
          print "plot " cmd > g
        }
        print "unset multiplot" > g
      }' "$OUT/stages_vs_memcpy.tsv"
    read -r np keyrows < "$D/stages_npanels"
    read -r rows cols w h < <(layout "$np")
    # keys longer than the 3 rows the 440-pixel panels leave room for: ~12 px per extra row
    [ "$keyrows" -gt 3 ] && h=$((h + rows * (keyrows - 3) * 12))
    if [ "$kind" = ratio ] && ! awk -F'\t' 'NR > 1 && $9 != "" { f = 1 } END { exit !f }' "$OUT/stages_vs_memcpy.tsv"; then
      echo "  charts/stages_vs_memcpy: no memcpy baseline in this run (filtered out?), not drawn"
      continue
    fi
    if [ "$kind" = gbps ]; then render stages_gbps "$w" "$h"
    else mv "$D/stages_ratio.gp" "$D/stages_vs_memcpy.gp"; render stages_vs_memcpy "$w" "$h"; fi
  done
fi

# ---------------------------------------------------------------- GEMM per model
if [ -s "$OUT/gemm.tsv" ]; then
  models=$(awk -F'\t' 'NR > 1 { n = split($4, a, ";"); for (i = 1; i <= n; i++) { m = a[i]; sub(/:.*/, "", m); if (m != "-" && !(m in s)) { s[m] = 1; print m } } }' "$OUT/gemm.tsv")
  for model in $models; do
    for kind in gops speedup; do
      np=$(awk -F'\t' -v D="$D" -v model="$model" -v kind="$kind" '
        FNR == 1 { next }
        FNR == NR { if (!($5 in fid)) { fid[$5] = ++nf; fname[nf] = $5 }; next }
        {
          # layers of this model using (N, K)
          n = split($4, a, ";"); ls = ""
          for (i = 1; i <= n; i++) if (index(a[i], model ":") == 1) ls = substr(a[i], length(model) + 2)
          if (ls == "") next
          shp = $1 "x" $2
          if (!(shp in pid)) { pid[shp] = ++np; pname[np] = "N=" $1 " K=" $2 " (" ls ")" }
          if (kind == "speedup" && $14 == "(itself)") next
          k = pid[shp] SUBSEP fid[$5]; c = ++cnt[k]
          X[k, c] = $3; Y[k, c] = (kind == "gops" ? $8 : $13)
        }
        END {
          g = D "/gemm_" kind "_" model ".gp"
          cols = np < 3 ? np : (np == 4 ? 2 : 3); rows = int((np + cols - 1) / cols)
          printf "set multiplot layout %d,%d title \"%s: %s\"\n", rows, cols, model,
            (kind == "gops" ? "GOPS (2MNK/t) vs M, cold weights" : "time(oneDNN bf16) / time vs M") > g
          print "set logscale x 2; set grid; set key below horizontal font \",8\"; set bmargin 6; set xlabel \"M (tokens)\"" > g
          print (kind == "gops" ? "set logscale y; set ylabel \"GOPS\"" : "set logscale y; set ylabel \"time(baseline) / time\"") > g
          for (p = 1; p <= np; p++) {
            printf "set title \"%s\"\n", pname[p] > g
            cmd = ""
            for (q = 1; q <= nf; q++) {
              k = p SUBSEP q
              if (!(k in cnt)) continue
              f = D "/gemm_" kind "_" model "_" p "_" q ".dat"
              for (i = 2; i <= cnt[k]; i++)
                for (j = i; j > 1 && X[k, j - 1] + 0 > X[k, j] + 0; j--) {
                  t = X[k, j]; X[k, j] = X[k, j - 1]; X[k, j - 1] = t
                  t = Y[k, j]; Y[k, j] = Y[k, j - 1]; Y[k, j - 1] = t
                }
              printf "" > f
              for (i = 1; i <= cnt[k]; i++) print X[k, i], Y[k, i] > f
              close(f)
              cmd = cmd (cmd == "" ? "" : ", ") sprintf("\"%s\" u 1:2 w lp lc %d pt 7 lw 2 t \"%s\"", f, q, fname[q])
            }
            if (kind == "speedup") cmd = cmd ", 1 w l lc rgb \"black\" dt 3 t \"oneDNN bf16 (baseline)\""
            if (cmd != "") print "plot " cmd > g
          }
          print "unset multiplot" > g
          print np
        }' "$OUT/gemm.tsv" "$OUT/gemm.tsv")
      [ "${np:-0}" -gt 0 ] || continue
      read -r rows cols w h < <(layout "$np")
      render "gemm_${kind}_$model" "$w" "$h"
    done
  done
fi

# ---------------------------------------------------------------- ResQ GEMM speedups (median over shapes)
if [ -s "$OUT/gemm.tsv" ] && awk -F'\t' 'NR > 1 && $5 ~ /^gemm_q4/ { f = 1 } END { exit !f }' "$OUT/gemm.tsv"; then
  awk -F'\t' -v D="$D" '
    NR == 1 { next }
    $5 ~ /^gemm_q4/ {
      f = $5; m = $3 + 0
      if (!(f in fid)) { fid[f] = ++nf; fname[nf] = f }
      if (!(m in ms)) { ms[m] = 1; mv[++nm] = m }
      n = ++cnt[f, m]; VB[f, m, n] = $13; VP[f, m, n] = $24
    }
    function stat(A, f, m, what,   n, i, j, t, v) {
      n = 0
      for (i = 1; i <= cnt[f, m]; i++) if (A[f, m, i] != "") v[++n] = A[f, m, i] + 0
      if (n == 0) return ""
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      if (what == "min") return v[1]
      if (what == "max") return v[n]
      return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    END {
      for (i = 2; i <= nm; i++) for (j = i; j > 1 && mv[j - 1] > mv[j]; j--) { t = mv[j]; mv[j] = mv[j - 1]; mv[j - 1] = t }
      g = D "/gemm_resq_speedup.gp"
      print "set multiplot layout 1,2 title \"ResQ mixed GEMM (CPU backend) vs oneDNN, same process: median over layer shapes (bars: min..max)\"" > g
      print "set logscale x 2; set logscale y 2; set yrange [0.5:*]; set grid; set key below horizontal font \",8\"; set bmargin 6; set xlabel \"M (tokens)\"" > g
      for (k = 1; k <= 2; k++) {
        printf "set title \"%s\"; set ylabel \"%s\"\n", (k == 1 ? "vs bf16 matmul (16-bit baseline)" : "vs u8s8 matmul (W8A8 peer)"),
          (k == 1 ? "time(oneDNN bf16) / time(ResQ)" : "time(oneDNN int8) / time(ResQ)") > g
        cmd = ""
        for (q = 1; q <= nf; q++) {
          f = D "/gemm_resq_speedup_" k "_" q ".dat"
          printf "" > f
          for (i = 1; i <= nm; i++) {
            if (k == 1) { a = stat(VB, fname[q], mv[i], "med"); lo = stat(VB, fname[q], mv[i], "min"); hi = stat(VB, fname[q], mv[i], "max") }
            else { a = stat(VP, fname[q], mv[i], "med"); lo = stat(VP, fname[q], mv[i], "min"); hi = stat(VP, fname[q], mv[i], "max") }
            if (a != "") print mv[i], a, lo, hi > f
          }
          close(f)
          cmd = cmd (cmd == "" ? "" : ", ") sprintf("\"%s\" u 1:2:3:4 w yerrorlines lc %d pt 7 lw 2 t \"%s\"", f, q, fname[q])
        }
        print "plot " cmd ", 1 w l lc rgb \"black\" dt 3 t \"parity\"" > g
      }
      print "unset multiplot" > g
    }' "$OUT/gemm.tsv"
  render gemm_resq_speedup 1200 480
fi

# ---------------------------------------------------------------- decoder layer
if [ -s "$OUT/layer.tsv" ]; then
  awk -F'\t' -v D="$D" '
    function lt(s,  u) { u = match(s, /_[^_]*$/); return u ? substr(s, 1, u - 1) " (" substr(s, u + 1) ")" : s }
    NR == 1 { next }
    { f = D "/layer_" $1 "_" $2 "_" $14 ".dat"; print $9, $7, $5, $6 > f; if (!((ph = $1 "_" $2 "_" $14) in seen)) { seen[ph] = 1; list[++n] = ph } }
    END {
      g = D "/layer_speedup.gp"
      print "set multiplot layout 1,2 title \"Decoder layer: ResQ form vs 16-bit form, same weights and backend (time(16-bit) / time(ResQ))\"" > g
      print "set logscale x 2; set grid; set key below horizontal font \",8\"; set bmargin 6; set yrange [0:*]; set xlabel \"batch\"" > g
      for (k = 1; k <= 2; k++) {
        ph = (k == 1 ? "prefill" : "decode")
        printf "set title \"%s\"; set ylabel \"speedup\"\n", (k == 1 ? "prefill: batch x 2048 tokens" : "decode proxy: batch new tokens (no KV cache)") > g
        cmd = ""
        for (i = 1; i <= n; i++) if (index(list[i], ph "_") == 1)
          cmd = cmd (cmd == "" ? "" : ", ") sprintf("\"%s\" u 1:2 w lp pt 7 lw 2 t \"%s\"", D "/layer_" list[i] ".dat", lt(substr(list[i], length(ph) + 2)))
        if (cmd == "") cmd = "NaN t \"not measured\""
        print "plot " cmd ", 1 w l lc rgb \"black\" dt 3 t \"parity\"" > g
      }
      print "unset multiplot" > g
    }' "$OUT/layer.tsv"
  for f in "$D"/layer_*.dat; do [ -f "$f" ] && sort -n -o "$f" "$f"; done
  render layer_speedup 1100 460
fi

# ---------------------------------------------------------------- layer error
if [ -s "$OUT/layer_error.tsv" ]; then
  awk -F'\t' -v D="$D" '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    {
      m = $(c["method"]) " (" $(c["wquant"]) ")"
      if (!(m in mid)) { mid[m] = ++nm; mname[nm] = m }
      k = mid[m]; v[k, ++cnt[k]] = $(c["err"]) + 0
      cfg = $(c["config"]) ", " $(c["tokens"]) " tokens"
    }
    END {
      f = D "/layer_error.dat"; printf "" > f
      for (k = 1; k <= nm; k++) {
        n = cnt[k]
        for (i = 2; i <= n; i++) for (j = i; j > 1 && v[k, j - 1] > v[k, j]; j--) { t = v[k, j]; v[k, j] = v[k, j - 1]; v[k, j - 1] = t }
        med = (n % 2) ? v[k, (n + 1) / 2] : (v[k, n / 2] + v[k, n / 2 + 1]) / 2
        printf "%d \"%s\" %g %g %g %d\n", k, mname[k], med, v[k, 1], v[k, n], n > f
      }
      close(f)
      g = D "/layer_error.gp"
      printf "set title \"Layer error ||y_method - y_FP16|| / ||y_FP16 - h_in|| (%s; bars: min..max over seeds)\"\n", cfg > g
      print "set style fill solid 0.5 border -1; set boxwidth 0.6; set logscale y; set grid y; set key off" > g
      printf "set xrange [0.3:%g]; set ylabel \"layer error (log scale)\"\n", nm + 0.7 > g
      print "plot \"" f "\" u 1:3:xtic(2) w boxes lc rgb \"#4a7ab8\", \"\" u 1:3:4:5 w yerrorbars lc rgb \"black\" pt 7 ps 0.6, \"\" u 1:($3*1.6):(sprintf(\"%.3g\", $3)) w labels font \",9\"" > g
    }' "$OUT/layer_error.tsv"
  render layer_error 900 520
fi
if [ -s "$OUT/layer_error_outliers.tsv" ]; then
  awk -F'\t' -v D="$D" '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    { m = $(c["method"]); if (!(m in f)) { f[m] = D "/layer_error_outliers_" m ".dat"; o[++no] = m; printf "" > f[m] }
      printf "%g %g\n", $(c["outlier_hi"]), $(c["err"]) >> f[m] }
    END {
      g = D "/layer_error_outliers.gp"
      print "set title \"Layer error vs the magnitude of the outlier channels (test layer, seed 0, GPTQ, no clip search)\"" > g
      print "set logscale xy; set grid; set key top left; set xlabel \"upper bound hi of the outlier channels / typical channel (ranges 1-1, 5-20, 20-100, 50-1000, 200-4000)\"" > g
      print "set ylabel \"layer error (log scale)\"; set xrange [0.8:6000]" > g
      s = "plot "
      for (i = 1; i <= no; i++) { close(f[o[i]]); t = o[i]; if (t == "fp32") t = "fp32 (unquantized floor)"; else if (t == "quarot") t = "QuaRot-style"; else if (t == "resq") t = "ResQ"; else if (t == "rtn") t = "RTN"
                                   s = s (i > 1 ? ", " : "") "\"" f[o[i]] "\" u 1:2 w lp lw 2 pt 7 t \"" t "\"" }
      print s > g
    }' "$OUT/layer_error_outliers.tsv"
  render layer_error_outliers 900 520
fi

# ---------------------------------------------------------------- roofline
if [ -s "$OUT/roofline.tsv" ]; then
  awk -F'\t' -v D="$D" -v S="$OUT/machine_summary.tsv" '
    BEGIN {
      while ((getline line < S) > 0) {
        split(line, a, "\t")
        if (a[1] == "read_bw_GBps") bw = a[2]
        if (a[1] ~ /^machine_peak_.*_GOPS$/) { np++; pk[np] = a[2]; pn[np] = a[1]; sub(/^machine_peak_/, "", pn[np]); sub(/_GOPS$/, "", pn[np]) }
      }
    }
    NR == 1 { next }
    {
      if (!($2 in fid)) { fid[$2] = ++nf; fname[nf] = $2 }
      f = D "/roofline_" fid[$2] ".dat"
      print $4, $5, $3 > f
      fr = fid[$2] SUBSEP $3; c = ++cnt[fr]; FR[fr, c] = $10
      if (!($3 in mid)) { mid[$3] = 1; ms[++nm] = $3 }
      if (xmin == "" || $4 + 0 < xmin) xmin = $4 + 0
      if ($4 + 0 > xmax) xmax = $4 + 0
    }
    END {
      g = D "/roofline.gp"
      print "set title \"Roofline: measured read bandwidth " bw " GB/s and instruction ceilings (2MNK/t vs 2MNK / bytes moved)\"" > g
      print "set logscale xy; set grid; set key bottom right font \",8\" opaque" > g
      print "set xlabel \"arithmetic intensity (ops per byte of weights + activations + output)\"; set ylabel \"GOPS\"" > g
      printf "set xrange [%g:%g]\n", xmin / 2, xmax * 2 > g
      cmd = ""
      for (i = 1; i <= np; i++)
        cmd = cmd (cmd == "" ? "" : ", ") sprintf("(x*%s < %s ? x*%s : %s) w l lc rgb \"gray%d\" lw 1.5 dt %d t \"roof: %s %s GOPS\"", bw, pk[i], bw, pk[i], 20 + 15 * i, i + 1, pn[i], pk[i])
      for (q = 1; q <= nf; q++)
        cmd = cmd (cmd == "" ? "" : ", ") sprintf("\"%s\" u 1:2 w p lc %d pt %d ps 1.2 t \"%s\"", D "/roofline_" q ".dat", q, 5 + 2 * (q % 4), fname[q])
      print "plot " cmd > g
      # fraction of the attainable roofline vs M: median over shapes per family
      for (i = 2; i <= nm; i++) for (j = i; j > 1 && ms[j - 1] + 0 > ms[j] + 0; j--) { t = ms[j]; ms[j] = ms[j - 1]; ms[j - 1] = t }
      g2 = D "/roofline_fraction.gp"
      print "set title \"Fraction of the attainable roofline min(peak, bandwidth x intensity), median over layer shapes\"" > g2
      print "set logscale x 2; set grid; set key below horizontal font \",8\"; set bmargin 6; set yrange [0:*]" > g2
      print "set xlabel \"M (tokens)\"; set ylabel \"achieved / attainable\"" > g2
      cmd = ""
      for (q = 1; q <= nf; q++) {
        f = D "/roofline_fraction_" q ".dat"
        printf "" > f
        for (m = 1; m <= nm; m++) {
          fr = q SUBSEP ms[m]; n = cnt[fr]
          if (n == 0) continue
          for (i = 1; i <= n; i++) v[i] = FR[fr, i] + 0
          for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
          med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
          print ms[m], med, v[1], v[n] > f
        }
        close(f)
        cmd = cmd (cmd == "" ? "" : ", ") sprintf("\"%s\" u 1:2:3:4 w yerrorlines lc %d pt 7 lw 2 t \"%s (bars: min..max)\"", f, q, fname[q])
      }
      print "plot " cmd ", 1 w l lc rgb \"black\" dt 3 notitle" > g2
    }' "$OUT/roofline.tsv"
  render roofline 1000 650
  render roofline_fraction 900 550
fi
