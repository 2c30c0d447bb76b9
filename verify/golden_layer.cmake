# SPDX-License-Identifier: Apache-2.0
# Golden decoder-layer cases (golden/data/layer_*, written by golden/gen_golden.py): the FP16
# and ResQ (q4q8) forms of the reference and of the CPU backend, bit for bit (CONTRACT s.14).
# golden_test is defined in verify/CMakeLists.txt, golden_cpu_test in verify/cpu.cmake.
foreach(st layer_fp16_f16 layer_q4q8_f16)
  resq_cpu_test(${st}__ref_golden layer EXE golden_test ARGS --golden ${RESQ_GOLDEN_DIR} --stage ${st})
  resq_cpu_test(${st}__cpu_golden layer EXE golden_cpu_test ARGS --golden ${RESQ_GOLDEN_DIR} --stage ${st})
endforeach()
