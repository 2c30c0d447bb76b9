# SPDX-License-Identifier: Apache-2.0
# GPTQ (ref/CONTRACT.md s.12): Hessian accumulation, GPTQ vs RTN and vs an
# independent textbook implementation, exactness properties, failures, and
# `resq gptq` end to end. Included by verify/CMakeLists.txt.
resq_cpu_test(gptq_f64__ref_props gptq EXE gptq_f64__ref_test SOURCES gptq_f64__ref_test.c
              ARGS --resq $<TARGET_FILE:resq> --tmp ${CMAKE_CURRENT_BINARY_DIR}/gptq_cli_tmp TIMEOUT 120)
add_dependencies(gptq_f64__ref_test resq)
