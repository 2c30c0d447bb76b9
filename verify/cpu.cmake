# SPDX-License-Identifier: Apache-2.0
# CPU backend (cpu/, resq/cpu.h) vs the reference and vs the golden data.
# Label "cpu;<stage>". Every program runs each check on the portable path and,
# when the CPU has AVX-512 VNNI, on the AVX-512 path (forced through
# resq_cpu_set_isa), so CI covers both dispatch paths on any x86-64.
# Needs the resq_cpu target: the top level adds cpu/ before verify/.
set(_resq_cpu_golden ${PROJECT_SOURCE_DIR}/golden)
function(resq_cpu_backend_test tname stage src)
  resq_cpu_test(${tname} ${stage} EXE ${src} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${src}.c ${ARGN})
  target_link_libraries(${src} PRIVATE resq_cpu)
endfunction()
resq_cpu_backend_test(gemm_q4q8_f16__cpu gemm cpu_gemm_q4q8_f16_test TIMEOUT 900)
resq_cpu_backend_test(hadamard_f32__cpu hadamard cpu_hadamard_f32_test)
resq_cpu_backend_test(quant_act_f32_q4q8__cpu quant cpu_quant_act_f32_q4q8_test)
# golden cases (path A), bit for bit, on every dispatch path
foreach(st hadamard_f16 quant_act_f16_q4q8 quant_kv_f16_q4q8)
  resq_cpu_backend_test(${st}__cpu_golden golden cpu_golden_test ARGS --golden ${_resq_cpu_golden} --stage ${st})
endforeach()
# golden gemm_q4q8_f16 (packed operands of the golden files, CPU layout round trip), bit
# for bit on every dispatch path: verify/golden_test.c built with RESQ_GOLDEN_CPU
resq_cpu_test(gemm_q4q8_f16__cpu_golden gemm EXE golden_cpu_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/golden_test.c
              ARGS --golden ${_resq_cpu_golden} --stage gemm_q4q8_f16)
target_compile_definitions(golden_cpu_test PRIVATE RESQ_GOLDEN_CPU=1)
target_link_libraries(golden_cpu_test PRIVATE resq_cpu)
# calibration stages on OpenBLAS/LAPACK: PCA (dsyrk + dsyevd) and GPTQ (dpotrf/dpotri + dgemm)
# vs the reference, by derived bounds (ref/CONTRACT.md s.12-13; the bounds are in the sources)
resq_cpu_backend_test(pca_f64__cpu pca cpu_pca_f64_test TIMEOUT 600)
resq_cpu_backend_test(gptq_f64__cpu gptq cpu_gptq_f64_test TIMEOUT 600)
# the FP16 GEMM (the 16-bit baseline of the layer comparison), bit for bit
resq_cpu_backend_test(gemm_f16__cpu gemm cpu_gemm_f16_test)
# the decoder layer on the CPU kernels (ResQ / QuaRot / RTN-style and FP16 forms), bit for bit
resq_cpu_backend_test(layer_q4q8__cpu layer cpu_layer_test TIMEOUT 600)
resq_cpu_test(gemm_f16__cpu_golden gemm EXE golden_cpu_test ARGS --golden ${_resq_cpu_golden} --stage gemm_f16)
