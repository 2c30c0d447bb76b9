# SPDX-License-Identifier: Apache-2.0
# Decoder layer: shared ops, FP16 form, the preparation pipeline (ResQ, QuaRot-style,
# RTN), the derived-bound checks, and the layer-error command.
resq_cpu_test(layer_ops__ref_props layer EXE layer_ops_test SOURCES layer_ops_test.c)
resq_cpu_test(layer_fp16__ref_plain layer EXE layer_fp16_test SOURCES layer_fp16_test.c TIMEOUT 120)
resq_cpu_test(layer_prepare_f32__ref_bounds layer EXE layer_bounds_test SOURCES layer_bounds_test.c TIMEOUT 300)
resq_cpu_test(layer_q4q8__ref_stages layer EXE layer_stages_test SOURCES layer_stages_test.c TIMEOUT 300)
resq_cpu_test(layer_prepare_f32__ref_props layer EXE layer_prepare_test SOURCES layer_prepare_test.c TIMEOUT 300)
add_test(NAME layer_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/layer_cli_test.sh $<TARGET_FILE:resq> $<TARGET_FILE:npy_tool>)
set_tests_properties(layer_cli PROPERTIES LABELS "cpu;layer;cli" TIMEOUT 300)
