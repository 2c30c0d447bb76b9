# SPDX-License-Identifier: Apache-2.0
# CUDA quantizers and fused kernels vs the reference, bit for bit (label gpu:
# exits 77 without a GPU). cuda_golden_test is defined in gpu_hadamard.cmake.
resq_gpu_test(quant_act_f32_q4q8__cuda quant EXE cuda_quant_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_quant_test.c)
foreach(st quant_act_f16_q4q8 quant_kv_f16_q4q8)
  resq_gpu_test(${st}__cuda_golden golden EXE cuda_golden_test ARGS --golden ${PROJECT_SOURCE_DIR}/golden --stage ${st})
endforeach()
