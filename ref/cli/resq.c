/* SPDX-License-Identifier: Apache-2.0
 * `resq <stage> ...`: run a reference stage on NPY files. Exit status 0 on
 * success, 1 on bad data or a failed stage, 2 on bad usage. */
#include <stdio.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} stage_entry;

static const stage_entry k_stages[] = {
    {"hadamard", cli_hadamard, "y = (x .* s) H_n^T along the last axis (or the offline weight form)"},
    {"quant-act", cli_quant_act, "per-token / grouped asymmetric mixed 4/8-bit quantization + dequantization"},
    {"quant-kv", cli_quant_kv, "per-head KV-cache quantization (path A, or upstream bf16 parity)"},
    {"quant-weight", cli_quant_weight, "symmetric per-channel 4/8-bit weight quantization (RTN) + GEMM packing"},
    {"gemm", cli_gemm, "mixed INT4/INT8 GEMM on quantized operands, or the FP16 baseline"},
    {"pca", cli_pca, "PCA basis of calibration batches + random in-subspace rotation: U = U_pca R"},
    {"fuse", cli_fuse, "offline fusion of a rotation into a weight: W U, U^T W, per-head v/o_proj, down_proj + H_I"},
    {"gptq", cli_gptq, "GPTQ of a weight (mixed lo/hi quantizer) from calibration batches, vs RTN objective"},
    {"layer", cli_layer, "one decoder layer (FP16, fp32, ResQ, QuaRot-style or RTN) on NPY weights and input"},
    {"layer-error", cli_layer_error, "layer error of ResQ vs QuaRot-style vs RTN on a synthetic LLM-like layer"},
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: resq <stage> [options]      run one reference stage on NPY files\n"
          "       resq <stage> --help         inputs, outputs (name, dtype, shape) and parameters\n"
          "       resq --version\n\nstages:\n");
  for (size_t i = 0; i < sizeof k_stages / sizeof k_stages[0]; i++)
    fprintf(f, "  %-13s %s\n", k_stages[i].name, k_stages[i].summary);
  fprintf(f,
          "\nInputs are NPY files (v1-v3, little endian, C order). 16-bit float inputs may be f16,\n"
          "bf16 saved as '<V2', or bf16 bit patterns saved as uint16. Outputs are written to the\n"
          "--out directory only if the whole stage succeeds. The numerics are ref/CONTRACT.md.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return CLI_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("resq %s\n", RESQ_VERSION_STRING);
    return CLI_OK;
  }
  for (size_t i = 0; i < sizeof k_stages / sizeof k_stages[0]; i++)
    if (strcmp(argv[1], k_stages[i].name) == 0) return k_stages[i].run(argc - 2, argv + 2);
  fprintf(stderr, "resq: error: unknown stage '%s' (run 'resq --help' for the list)\n", argv[1]);
  return CLI_USAGE;
}
