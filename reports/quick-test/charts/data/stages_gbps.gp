set multiplot layout 1,1 title "Stages vs memcpy of the same bytes (dashed)"
set logscale x 2; set logscale y; set grid; set key center right font ",8" opaque
set xlabel "rows (tokens)"
set ylabel "GB/s (inputs + outputs)"
set title "width 4096"
plot "/work/main/reports/quick-test/charts/data/stages_1.dat" u 1:2 w lp lc 1 pt 7 lw 2 t "hadamard_f16__ref n:4096", "/work/main/reports/quick-test/charts/data/stages_1.dat" u 1:3 w l lc 1 dt 2 notitle, "/work/main/reports/quick-test/charts/data/stages_2.dat" u 1:2 w lp lc 2 pt 7 lw 2 t "quant_act_f16_q4q8__ref K:4096/group:4096/r:512", "/work/main/reports/quick-test/charts/data/stages_2.dat" u 1:3 w l lc 2 dt 2 notitle, "/work/main/reports/quick-test/charts/data/stages_3.dat" u 1:2 w lp lc 3 pt 7 lw 2 t "quant_act_f16_q4q8__ref K:4096/group:4096/r:0", "/work/main/reports/quick-test/charts/data/stages_3.dat" u 1:3 w l lc 3 dt 2 notitle, "/work/main/reports/quick-test/charts/data/stages_4.dat" u 1:2 w lp lc 4 pt 7 lw 2 t "quant_act_f16_q4q8__ref K:4096/group:128/r:16", "/work/main/reports/quick-test/charts/data/stages_4.dat" u 1:3 w l lc 4 dt 2 notitle
unset multiplot
