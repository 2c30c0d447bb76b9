set multiplot layout 1,1 title "llama3-8b: time(oneDNN bf16) / time vs M"
set logscale x 2; set grid; set key top left font ",8" opaque; set xlabel "M (tokens)"
set logscale y; set ylabel "time(baseline) / time"
set title "N=1024 K=4096 (k_proj)"
plot "/work/main/reports/quick-test/charts/data/gemm_speedup_llama3-8b_1_2.dat" u 1:2 w lp lc 2 pt 7 lw 2 t "gemm_u8s8_f32__onednn", "/work/main/reports/quick-test/charts/data/gemm_speedup_llama3-8b_1_3.dat" u 1:2 w lp lc 3 pt 7 lw 2 t "gemm_f32__openblas", "/work/main/reports/quick-test/charts/data/gemm_speedup_llama3-8b_1_4.dat" u 1:2 w lp lc 4 pt 7 lw 2 t "gemv_f32__openblas", 1 w l lc rgb "black" dt 3 t "oneDNN bf16 (baseline)"
unset multiplot
