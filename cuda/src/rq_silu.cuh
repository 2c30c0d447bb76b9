// SPDX-License-Identifier: Apache-2.0
// The SiLU table of the fused down_proj-input kernels and of the GPU layer.
//
// The reference's SiLU is resq_silu_f32(g) = g / (1 + expf(-g)) (ref/src/
// layer_internal.h) with the HOST libm's expf. CUDA's expf differs from glibc's
// in the last ulp for some inputs (CUDA documents up to 2 ulp), so a device
// evaluation could not be bit-identical. The SiLU input is always an f16 value
// (a GEMM output), so the kernels read silu(g) from a table of all 65536 f16 bit
// patterns computed once on the host with the reference's own function, which
// makes the fused kernels the exact composition of reference functions on the
// platform the reference runs on. 256 KiB of device memory per device, made at
// the first call and kept for the life of the process; the hot part (|g| < 8)
// is ~60 KiB and stays in L1/L2.
#ifndef RESQ_CUDA_RQ_SILU_CUH
#define RESQ_CUDA_RQ_SILU_CUH

#include "resq/status.h"

// Device pointer to the table of the current device, built on first use
// (thread safe). NULL on failure, *st set (RESQ_ERR_DEVICE / RESQ_ERR_NO_DEVICE).
const float *rq_silu_table(resq_status *st);

#endif
