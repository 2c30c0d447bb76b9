/* SPDX-License-Identifier: Apache-2.0
 * Reference asymmetric mixed 4/8-bit activation quantizer (ref/CONTRACT.md
 * sections 3 and 4). One implementation serves per-token rows (group = K), the
 * per-head KV cache (group = head_dim) and the o_proj input (group = head_dim,
 * lo/hi split = upstream's column permutation).
 *
 * Path A, per part (lo or hi) of each group, all in IEEE fp32, no FMA:
 *   mn = min(min_i x_i, 0) * clip;  mx = max(max_i x_i, 0) * clip
 *   if (mn == 0 && mx == 0) { mn = -1; mx = 1; }          all-zero guard
 *   s  = (mx - mn) / maxq                                  IEEE division
 *   z  = rint(-mn / s)                                     half to even
 *   q_i = clamp(rint(x_i / s) + z, 0, maxq)
 * The range includes 0, so z is in [0, maxq] and 0 is represented exactly.
 */
#include <math.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/quant_act.h"

int resq_qmax_asym(int bits) { return (1 << bits) - 1; }

resq_qact_params resq_qact_default(int64_t K) {
  resq_qact_params p;
  p.K = K;
  p.group = K;
  p.r = K / 8;
  p.bits_lo = 4;
  p.bits_hi = 8;
  p.clip = 1.0f;
  p.mode = RESQ_QMODE_PATH_A;
  return p;
}

resq_status resq_qact_check(const resq_qact_params *p, resq_qact_layout *layout) {
  if (!p) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: NULL params");
  if (p->K < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: K=%lld must be >= 1", (long long)p->K);
  if (p->group < 1 || p->group > p->K)
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant: group=%lld must be in [1, K=%lld]", (long long)p->group,
                     (long long)p->K);
  if (p->K % p->group != 0)
    return resq_fail(RESQ_ERR_SHAPE, "quant: K=%lld is not divisible by the group size %lld", (long long)p->K,
                     (long long)p->group);
  if (p->r < 0 || p->r > p->group)
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant: r=%lld must be in [0, group=%lld]", (long long)p->r,
                     (long long)p->group);
  if (p->bits_lo < 1 || p->bits_lo > 4)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "quant: bits_lo=%d (supported 1..4, packed two per byte)", p->bits_lo);
  if (p->bits_hi < 1 || p->bits_hi > 8)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "quant: bits_hi=%d (supported 1..8, one per byte)", p->bits_hi);
  if (!(p->clip > 0.0f && p->clip <= 1.0f))
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant: clip ratio %g must be in (0, 1]", (double)p->clip);
  if (p->mode != RESQ_QMODE_PATH_A && p->mode != RESQ_QMODE_PATH_B_BF16)
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant: unknown mode %d", (int)p->mode);
  if (layout) {
    layout->ngroups = p->K / p->group;
    layout->lo_per_group = p->group - p->r;
    layout->lo_bytes_per_group = (p->group - p->r + 1) / 2;
    layout->lo_bytes = layout->ngroups * layout->lo_bytes_per_group;
    layout->hi_bytes = layout->ngroups * p->r;
  }
  return RESQ_OK;
}

static resq_status check_out(const resq_qact_layout *L, int64_t M, const resq_qact *o) {
  if (!o) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: NULL output descriptor");
  if (M > 0 && L->lo_bytes > 0) {
    if (!o->q_lo || !o->scale_lo || !o->zero_lo)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: lo part present but q_lo/scale_lo/zero_lo is NULL");
    if (M > 1 && o->ld_lo < L->lo_bytes)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: ld_lo=%lld < %lld bytes per row", (long long)o->ld_lo,
                       (long long)L->lo_bytes);
  }
  if (M > 0 && L->hi_bytes > 0) {
    if (!o->q_hi || !o->scale_hi || !o->zero_hi)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: hi part present but q_hi/scale_hi/zero_hi is NULL");
    if (M > 1 && o->ld_hi < L->hi_bytes)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: ld_hi=%lld < %lld bytes per row", (long long)o->ld_hi,
                       (long long)L->hi_bytes);
  }
  return RESQ_OK;
}

/* Rows are read through one of two element types. */
typedef struct {
  const float *f32;
  const uint16_t *f16;
  int64_t ld;
} src_rows;

static float load(const src_rows *s, int64_t m, int64_t j) {
  return s->f32 ? s->f32[m * s->ld + j] : resq_f16_to_f32(s->f16[m * s->ld + j]);
}

/* Quantizer parameters of one part: n values starting at column c0 of row m. */
typedef struct {
  float s;
  float z; /* integer valued */
} qparams;

static resq_status part_params(const resq_qact_params *p, const src_rows *src, int64_t m, int64_t c0,
                               int64_t n, int bits, qparams *q) {
  float maxq = (float)resq_qmax_asym(bits);
  float mn, mx;
  if (p->mode == RESQ_QMODE_PATH_A) {
    mn = 0.0f;
    mx = 0.0f;
    for (int64_t i = 0; i < n; i++) {
      float v = load(src, m, c0 + i);
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    mn = mn * p->clip;
    mx = mx * p->clip;
    if (mn == 0.0f && mx == 0.0f) {
      mn = -1.0f;
      mx = 1.0f;
    }
    q->s = (mx - mn) / maxq;
    if (!(q->s > 0.0f) || !isfinite(q->s))
      return resq_fail(RESQ_ERR_DEGENERATE,
                       "quant: row %lld channels [%lld, %lld): range [%g, %g] gives scale %g, outside fp32's "
                       "normal range",
                       (long long)m, (long long)c0, (long long)(c0 + n), (double)mn, (double)mx, (double)q->s);
    q->z = nearbyintf(-mn / q->s);
  } else {
    /* upstream find_params_per_token_groupwise on bf16 tensors: every op is
     * computed in fp32 and rounded to bf16; the range does not include 0. */
    mn = resq_round_bf16(load(src, m, c0));
    mx = mn;
    for (int64_t i = 1; i < n; i++) {
      float v = resq_round_bf16(load(src, m, c0 + i));
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    mn = resq_round_bf16(mn * p->clip);
    mx = resq_round_bf16(mx * p->clip);
    if (mn == 0.0f && mx == 0.0f) {
      mn = -1.0f;
      mx = 1.0f;
    }
    float d = resq_round_bf16(mx - mn);
    q->s = resq_round_bf16(d / maxq);
    if (!(q->s > 0.0f) || !isfinite(q->s))
      return resq_fail(RESQ_ERR_DEGENERATE,
                       "quant (path B): row %lld channels [%lld, %lld) are constant (%g) or too narrow: the bf16 "
                       "scale is %g; upstream would produce NaN here",
                       (long long)m, (long long)c0, (long long)(c0 + n), (double)mn, (double)q->s);
    q->z = resq_round_bf16(nearbyintf(resq_round_bf16(-mn / q->s)));
  }
  return RESQ_OK;
}

static int code_of(const resq_qact_params *p, float x, const qparams *q, int bits) {
  float maxq = (float)resq_qmax_asym(bits);
  float c;
  if (p->mode == RESQ_QMODE_PATH_A) {
    c = nearbyintf(x / q->s) + q->z;
  } else {
    float t = resq_round_bf16(resq_round_bf16(x) / q->s);
    c = resq_round_bf16(nearbyintf(t) + q->z);
  }
  if (c < 0.0f) c = 0.0f;
  if (c > maxq) c = maxq;
  return (int)c;
}

static resq_status quantize(const resq_qact_params *p, int64_t M, const src_rows *src,
                            const resq_qact *out) {
  resq_qact_layout L;
  resq_status st = resq_qact_check(p, &L);
  if (st) return st;
  if (M < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: M=%lld < 0", (long long)M);
  if (M > 0 && !(src->f32 || src->f16)) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: NULL input");
  if (M > 1 && src->ld < p->K)
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant: ldx=%lld < K=%lld", (long long)src->ld, (long long)p->K);
  st = check_out(&L, M, out);
  if (st) return st;
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < p->K; j++)
      if (!isfinite(load(src, m, j)))
        return resq_fail(RESQ_ERR_NONFINITE, "quant: x[%lld][%lld] is NaN or Inf", (long long)m, (long long)j);
  /* pass 0 finds every scale (and every degenerate group) before pass 1 writes */
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t m = 0; m < M; m++) {
      for (int64_t g = 0; g < L.ngroups; g++) {
        int64_t c0 = g * p->group;
        qparams lo = {0, 0}, hi = {0, 0};
        if (L.lo_per_group > 0) {
          st = part_params(p, src, m, c0, L.lo_per_group, p->bits_lo, &lo);
          if (st) return st;
        }
        if (p->r > 0) {
          st = part_params(p, src, m, c0 + L.lo_per_group, p->r, p->bits_hi, &hi);
          if (st) return st;
        }
        if (pass == 0) continue;
        if (L.lo_per_group > 0) {
          uint8_t *dst = out->q_lo + m * out->ld_lo + g * L.lo_bytes_per_group;
          memset(dst, 0, (size_t)L.lo_bytes_per_group);
          for (int64_t i = 0; i < L.lo_per_group; i++) {
            int c = code_of(p, load(src, m, c0 + i), &lo, p->bits_lo);
            dst[i / 2] |= (uint8_t)(i % 2 == 0 ? c : c << 4);
          }
          out->scale_lo[m * L.ngroups + g] = lo.s;
          out->zero_lo[m * L.ngroups + g] = (int32_t)lo.z;
        }
        if (p->r > 0) {
          uint8_t *dst = out->q_hi + m * out->ld_hi + g * p->r;
          for (int64_t i = 0; i < p->r; i++)
            dst[i] = (uint8_t)code_of(p, load(src, m, c0 + L.lo_per_group + i), &hi, p->bits_hi);
          out->scale_hi[m * L.ngroups + g] = hi.s;
          out->zero_hi[m * L.ngroups + g] = (int32_t)hi.z;
        }
      }
    }
  }
  return RESQ_OK;
}

resq_status resq_quant_act_f32_q4q8__ref(const resq_qact_params *p, int64_t M, const float *x,
                                         int64_t ldx, const resq_qact *out) {
  src_rows s = {x, NULL, ldx};
  return quantize(p, M, &s, out);
}

resq_status resq_quant_act_f16_q4q8__ref(const resq_qact_params *p, int64_t M, const uint16_t *x,
                                         int64_t ldx, const resq_qact *out) {
  src_rows s = {NULL, x, ldx};
  return quantize(p, M, &s, out);
}

/* Dequantize code c with (s, z) according to the mode. */
static float dequant_one(const resq_qact_params *p, int c, float s, int32_t z) {
  if (p->mode == RESQ_QMODE_PATH_A) return s * (float)(c - z); /* c - z exact in int */
  return resq_round_bf16(s * resq_round_bf16((float)c - (float)z));
}

static resq_status dequant(const resq_qact_params *p, int64_t M, const resq_qact *in, float *yf,
                           uint16_t *yh, int64_t ldy) {
  resq_qact_layout L;
  resq_status st = resq_qact_check(p, &L);
  if (st) return st;
  if (M < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "dequant: M=%lld < 0", (long long)M);
  st = check_out(&L, M, in);
  if (st) return st;
  if (M > 0 && !yf && !yh) return resq_fail(RESQ_ERR_INVALID_ARG, "dequant: NULL output");
  if (M > 1 && ldy < p->K) return resq_fail(RESQ_ERR_INVALID_ARG, "dequant: ldy < K");
  for (int64_t m = 0; m < M; m++)
    for (int64_t g = 0; g < L.ngroups; g++) {
      int64_t c0 = g * p->group;
      for (int64_t i = 0; i < p->group; i++) {
        int c;
        float s;
        int32_t z;
        if (i < L.lo_per_group) {
          uint8_t b = in->q_lo[m * in->ld_lo + g * L.lo_bytes_per_group + i / 2];
          c = i % 2 == 0 ? (b & 0x0f) : (b >> 4);
          s = in->scale_lo[m * L.ngroups + g];
          z = in->zero_lo[m * L.ngroups + g];
        } else {
          c = in->q_hi[m * in->ld_hi + g * p->r + (i - L.lo_per_group)];
          s = in->scale_hi[m * L.ngroups + g];
          z = in->zero_hi[m * L.ngroups + g];
        }
        float v = dequant_one(p, c, s, z);
        if (yf) yf[m * ldy + c0 + i] = v;
        else yh[m * ldy + c0 + i] = resq_f32_to_f16(v);
      }
    }
  return RESQ_OK;
}

resq_status resq_dequant_act_q4q8_f32__ref(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                           float *y, int64_t ldy) {
  return dequant(p, M, in, y, NULL, ldy);
}

resq_status resq_dequant_act_q4q8_f16__ref(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                           uint16_t *y, int64_t ldy) {
  return dequant(p, M, in, NULL, y, ldy);
}

resq_status resq_oproj_column_order(int64_t H, int64_t hd, int64_t r_h, int32_t *order) {
  if (H < 1 || hd < 1 || r_h < 0 || r_h > hd || !order || H * hd > INT32_MAX)
    return resq_fail(RESQ_ERR_INVALID_ARG, "oproj order: bad H=%lld hd=%lld r_h=%lld", (long long)H,
                     (long long)hd, (long long)r_h);
  int64_t j = 0;
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = 0; i < hd - r_h; i++) order[j++] = (int32_t)(h * hd + i);
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = hd - r_h; i < hd; i++) order[j++] = (int32_t)(h * hd + i);
  return RESQ_OK;
}
