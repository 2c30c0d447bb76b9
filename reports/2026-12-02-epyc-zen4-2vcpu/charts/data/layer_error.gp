set title "Layer error ||y_method - y_FP16|| / ||y_FP16 - h_in|| (test, 64 tokens; bars: min..max over seeds)"
set style fill solid 0.5 border -1; set boxwidth 0.6; set logscale y; set grid y; set key off
set xrange [0.3:4.7]; set ylabel "layer error (log scale)"
plot "/work/main/reports/2026-12-02-epyc-zen4-2vcpu/charts/data/layer_error.dat" u 1:3:xtic(2) w boxes lc rgb "#4a7ab8", "" u 1:3:4:5 w yerrorbars lc rgb "black" pt 7 ps 0.6, "" u 1:($3*1.6):(sprintf("%.3g", $3)) w labels font ",9"
