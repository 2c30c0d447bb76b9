/* SPDX-License-Identifier: Apache-2.0
 * verify/resq_gpu.h -- the skip policy of GPU tests.
 * rc_gpu_require() probes the device; without one it prints the reason and
 * exits 77 (ctest SKIP_RETURN_CODE), unless RESQ_REQUIRE_GPU=1, which makes
 * it a failure (exit 1). A skip is not a pass: CI without a GPU shows the test
 * as "Skipped" and ci/test refuses a run in which nothing passed. */
#ifndef RESQ_VERIFY_GPU_H
#define RESQ_VERIFY_GPU_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cuda.h"

static inline void rc_gpu_require(const char *program) {
  char why[512];
  if (resq_cuda_probe(why, sizeof why) == RESQ_OK) {
    printf("%s: running on %s\n", program, why);
    return;
  }
  const char *req = getenv("RESQ_REQUIRE_GPU");
  if (req && strcmp(req, "1") == 0) {
    printf("%s: FAILED: RESQ_REQUIRE_GPU=1 but no usable GPU: %s\n", program, why);
    exit(1);
  }
  printf("%s: SKIPPED (exit 77): no usable GPU: %s\n", program, why);
  exit(77);
}

#endif
