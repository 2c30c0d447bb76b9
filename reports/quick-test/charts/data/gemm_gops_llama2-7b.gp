set multiplot layout 1,1 title "llama2-7b: GOPS (2MNK/t) vs M, cold weights"
set logscale x 2; set grid; set key top left font ",8" opaque; set xlabel "M (tokens)"
set logscale y; set ylabel "GOPS"
set title "N=4096 K=4096 (q_proj)"
plot "/work/main/reports/quick-test/charts/data/gemm_gops_llama2-7b_1_1.dat" u 1:2 w lp lc 1 pt 7 lw 2 t "gemm_bf16_f32__onednn", "/work/main/reports/quick-test/charts/data/gemm_gops_llama2-7b_1_2.dat" u 1:2 w lp lc 2 pt 7 lw 2 t "gemm_u8s8_f32__onednn", "/work/main/reports/quick-test/charts/data/gemm_gops_llama2-7b_1_3.dat" u 1:2 w lp lc 3 pt 7 lw 2 t "gemm_f32__openblas", "/work/main/reports/quick-test/charts/data/gemm_gops_llama2-7b_1_4.dat" u 1:2 w lp lc 4 pt 7 lw 2 t "gemv_f32__openblas"
unset multiplot
