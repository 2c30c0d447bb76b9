/* SPDX-License-Identifier: Apache-2.0
 * resq/resq.h -- umbrella header of the reference library. */
#ifndef RESQ_RESQ_H
#define RESQ_RESQ_H
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/hadamard.h"
#include "resq/npy.h"
#include "resq/quant_act.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq/status.h"
#endif
