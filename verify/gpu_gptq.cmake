# SPDX-License-Identifier: Apache-2.0
# CUDA GPTQ (cuSOLVER Cholesky + block kernel + cuBLAS) vs the reference by the GPTQ
# objective and code agreement (label gpu: exits 77 without a GPU).
resq_gpu_test(gptq_f64__cuda gptq EXE cuda_gptq_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_gptq_test.c)
