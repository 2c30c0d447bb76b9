# SPDX-License-Identifier: Apache-2.0
# The decoder layer on the GPU (ResQ and FP16 forms), stage by stage against the
# reference functions on the GPU's own intermediates (label gpu: exits 77 without a GPU).
resq_gpu_test(layer_q4q8__cuda layer EXE cuda_layer_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_layer_test.c)
