# SPDX-License-Identifier: Apache-2.0
# CUDA Hadamard vs the reference, bit for bit (label gpu: exits 77 without a GPU).
resq_gpu_test(hadamard_f32__cuda hadamard EXE cuda_hadamard_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_hadamard_test.c)
resq_gpu_test(hadamard_f16__cuda_golden golden EXE cuda_golden_test
              SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_golden_test.c ARGS --golden ${PROJECT_SOURCE_DIR}/golden --stage hadamard_f16)
