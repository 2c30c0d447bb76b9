# SPDX-License-Identifier: Apache-2.0
# CUDA mixed GEMM (resq/cuda_gemm.h) and the cuBLAS / cuBLASLt baselines.
#
# gemm_q4q8_f16__cuda_host (label cpu): the host emulation of both kernels -- every thread's
#   chunk loads, swizzled smem, ldmatrix addresses, PTX MMA fragments (emulated from the ISA),
#   sm_90 unpacking, split-K and epilogue -- vs the reference, bit for bit. Runs without a GPU.
# gemm_q4q8_f16__cuda, gemm_f16__cublas, gemm_s8_s32__cublaslt (label gpu): the real kernels and
#   libraries; exit 77 (skipped) without a usable GPU.
# Plain C++ (g++): the kernels' shared headers are __host__ __device__ code that compiles as host
# C++ without nvcc (RQ_HD), so the emulation needs no CUDA compiler pass at all.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/cuda_gemm_host_test.cu PROPERTIES LANGUAGE CXX)
add_executable(cuda_gemm_host_test ${CMAKE_CURRENT_LIST_DIR}/cuda_gemm_host_test.cu)
target_include_directories(cuda_gemm_host_test PRIVATE ${PROJECT_SOURCE_DIR}/cuda/src)
# -ffp-contract=off: the emulated epilogue must round exactly like the reference (no FMA)
target_compile_options(cuda_gemm_host_test PRIVATE -O2 -ffp-contract=off -fno-fast-math -Wall -Wextra
                       $<$<BOOL:${RESQ_WERROR}>:-Werror>)
target_link_libraries(cuda_gemm_host_test PRIVATE resq_check resq_cuda)
add_test(NAME gemm_q4q8_f16__cuda_host COMMAND cuda_gemm_host_test)
set_tests_properties(gemm_q4q8_f16__cuda_host PROPERTIES LABELS "cpu;gemm" TIMEOUT 1200)

resq_gpu_test(gemm_q4q8_f16__cuda gemm SOURCES ${CMAKE_CURRENT_LIST_DIR}/gemm_q4q8_f16__cuda_test.c)
resq_gpu_test(gemm_f16__cublas gemm EXE gemm_cublas__cuda_test
              SOURCES ${CMAKE_CURRENT_LIST_DIR}/gemm_cublas__cuda_test.c ARGS --lib f16)
resq_gpu_test(gemm_s8_s32__cublaslt gemm EXE gemm_cublas__cuda_test ARGS --lib s8)
