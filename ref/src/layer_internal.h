/* SPDX-License-Identifier: Apache-2.0
 * Internal helpers of the decoder-layer reference: a bump allocator over the
 * caller's workspace and SiLU. */
#ifndef RESQ_LAYER_INTERNAL_H
#define RESQ_LAYER_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
  char *base;
  size_t cap, used;
} bump;

static inline void *bump_take(bump *b, size_t bytes) {
  size_t off = (b->used + 31) & ~(size_t)31;
  if (off + bytes > b->cap || !b->base) return NULL;
  b->used = off + bytes;
  return b->base + off;
}
static inline float *bump_f32(bump *b, int64_t n) { return (float *)bump_take(b, (size_t)(n > 0 ? n : 1) * 4); }
static inline uint16_t *bump_u16(bump *b, int64_t n) { return (uint16_t *)bump_take(b, (size_t)(n > 0 ? n : 1) * 2); }
static inline uint8_t *bump_u8(bump *b, int64_t n) { return (uint8_t *)bump_take(b, (size_t)(n > 0 ? n : 1)); }

/* y[t][n] = (float) sum_{k ascending} (double)x[t][k] * w[n][k] (w is [N][K]
 * contiguous): the fp32 form's GEMM (resq_layer_f32__ref.c). */
void resq_layer_gemm_f32d_(int64_t T, int64_t N, int64_t K, const float *x, int64_t ldx, const float *w, float *y,
                           int64_t ldy);

/* SiLU in fp32: g / (1 + expf(-g)) (one division, IEEE). */
static inline float resq_silu_f32(float g) { return g / (1.0f + expf(-g)); }

#endif
