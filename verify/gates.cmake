# SPDX-License-Identifier: Apache-2.0
# Generated cases of every reference and CPU stage (verify/golden_synth.c): bounds,
# CPU == reference, two runs identical. The same program writes the figures of the
# accuracy gate (ci/gate_accuracy.sh, --metrics) and the output hashes of the
# determinism gate (ci/gate_determinism.sh, --hash). Included by verify/CMakeLists.txt.
resq_cpu_test(golden_synth golden EXE golden_synth SOURCES ${CMAKE_CURRENT_LIST_DIR}/golden_synth.c TIMEOUT 600)
target_link_libraries(golden_synth PRIVATE resq_cpu)
