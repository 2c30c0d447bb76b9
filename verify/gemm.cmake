# SPDX-License-Identifier: Apache-2.0
# Mixed GEMM and weight quantizer: properties and goldens.
resq_cpu_test(gemm_q4q8_f16__ref_props gemm EXE gemm_q4q8_f16__ref_test SOURCES gemm_q4q8_f16__ref_test.c)
