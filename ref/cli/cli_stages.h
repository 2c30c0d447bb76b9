/* SPDX-License-Identifier: Apache-2.0
 * Entry points of the `resq` stages (argc/argv without the stage name). */
#ifndef RESQ_CLI_STAGES_H
#define RESQ_CLI_STAGES_H
int cli_hadamard(int argc, char **argv);
int cli_quant_act(int argc, char **argv);
int cli_quant_kv(int argc, char **argv);
int cli_quant_weight(int argc, char **argv);
int cli_gemm(int argc, char **argv);
int cli_pca(int argc, char **argv);
int cli_gptq(int argc, char **argv);
int cli_fuse(int argc, char **argv);
int cli_layer(int argc, char **argv);
int cli_layer_error(int argc, char **argv);
#endif
