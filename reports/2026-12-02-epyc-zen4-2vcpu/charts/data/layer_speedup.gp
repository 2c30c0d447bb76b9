set multiplot layout 1,2 title "Decoder layer: ResQ form vs 16-bit form, same weights and backend (time(16-bit) / time(ResQ))"
set logscale x 2; set grid; set key below horizontal font ",8"; set bmargin 6; set yrange [0:*]; set xlabel "batch"
set title "prefill: batch x 2048 tokens"; set ylabel "speedup"
plot "/work/main/reports/2026-12-02-epyc-zen4-2vcpu/charts/data/layer_prefill_llama3-8b_cpu.dat" u 1:2 w lp pt 7 lw 2 t "llama3-8b (cpu)", 1 w l lc rgb "black" dt 3 t "parity"
set title "decode proxy: batch new tokens (no KV cache)"; set ylabel "speedup"
plot "/work/main/reports/2026-12-02-epyc-zen4-2vcpu/charts/data/layer_decode_llama3-8b_cpu.dat" u 1:2 w lp pt 7 lw 2 t "llama3-8b (cpu)", 1 w l lc rgb "black" dt 3 t "parity"
unset multiplot
