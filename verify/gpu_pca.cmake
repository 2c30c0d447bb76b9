# SPDX-License-Identifier: Apache-2.0
# CUDA PCA basis (cuBLAS DSYRK + cuSOLVER syevd / XsyevBatched) vs the reference by
# the contract's bounds (label gpu: exits 77 without a GPU).
resq_gpu_test(pca_f64__cuda pca EXE cuda_pca_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_pca_test.c)
