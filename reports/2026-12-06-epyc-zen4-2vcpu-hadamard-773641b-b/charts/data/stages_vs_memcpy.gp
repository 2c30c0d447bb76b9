set multiplot layout 1,3 title "Activation stages: stage GB/s / memcpy GB/s of the same bytes"
set logscale x 2; set logscale y; set format y "%g"; set grid; set key below horizontal maxcols 2 font ",8"; set bmargin 6
set xlabel "rows (tokens)"
set ylabel "stage / memcpy"
set title "hadamard_f16__ref"
plot "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_1.dat" u 1:4 w lp lc 1 pt 7 dt 1 lw 2 t "n:4096", "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_3.dat" u 1:4 w lp lc 2 pt 7 dt 1 lw 2 t "n:11008", "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_5.dat" u 1:4 w lp lc 3 pt 7 dt 1 lw 2 t "n:14336", 1 w l lc rgb "black" dt 3 t "memcpy"
set title "hadamard_f16__cpu"
plot "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_2.dat" u 1:4 w lp lc 1 pt 7 dt 1 lw 2 t "n:4096", "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_4.dat" u 1:4 w lp lc 2 pt 7 dt 1 lw 2 t "n:11008", "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_6.dat" u 1:4 w lp lc 3 pt 7 dt 1 lw 2 t "n:14336", 1 w l lc rgb "black" dt 3 t "memcpy"
set title "hadamard_quant_act_f16_q4q8__cpu"
plot "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_7.dat" u 1:4 w lp lc 1 pt 7 dt 1 lw 2 t "K:11008/group:11008/r:0", "/work/main/reports/2026-12-06-epyc-zen4-2vcpu-hadamard-773641b-b/charts/data/stages_8.dat" u 1:4 w lp lc 2 pt 7 dt 1 lw 2 t "K:14336/group:14336/r:0", 1 w l lc rgb "black" dt 3 t "memcpy"
unset multiplot
