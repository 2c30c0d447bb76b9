# SPDX-License-Identifier: Apache-2.0
# Decoder layer: shared ops, FP16 form, ResQ form and the layer-error comparison.
resq_cpu_test(layer_ops__ref_props layer EXE layer_ops_test SOURCES layer_ops_test.c)
