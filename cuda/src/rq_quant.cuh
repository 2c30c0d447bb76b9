// SPDX-License-Identifier: Apache-2.0
// The activation quantizer's decomposition, arithmetic and packing as __host__
// __device__ code, shared by the kernels (resq_quant_act_f32_q4q8__cuda.cu,
// resq_hadamard_quant_f16_q4__cuda.cu) and by the host emulation test
// (verify/cuda_host_test.cu), which replays the kernel's work split and packing
// thread by thread and must reproduce resq_quant_act_*__ref bit for bit.
//
// Contract (ref/CONTRACT.md section 3, path A), per part of a group, fp32:
//   mn = min(x.., 0)*clip; mx = max(x.., 0)*clip; all-zero guard -> (-1, 1)
//   s = (mx - mn) / maxq      (IEEE division, never a reciprocal multiply)
//   z = rint(-mn / s)         (half to even)
//   q = clamp(rint(x / s) + z, 0, maxq)
// min/max are exact and, with rq_min/rq_max, independent of the reduction order,
// so a shuffle + shared-memory tree gives the reference's bits; everything after
// the reduction is per element and written exactly as the reference writes it.
//
// Work split: an "item" is one (row, group). Its lo part (first group-r
// channels) and hi part (last r) are cut into chunks of 8 consecutive channels,
// lo chunks first; a chunk never straddles the two parts. An item is handled by
// TG = 2^log_tg threads (TG = next power of two of the chunk count, at most
// 1024); thread t takes chunks t, t+TG, t+2TG, ... A chunk of the lo part gives
// 4 bytes of packed codes, a chunk of the hi part 8 bytes.
#ifndef RESQ_CUDA_RQ_QUANT_CUH
#define RESQ_CUDA_RQ_QUANT_CUH

#include <stddef.h>
#include <stdint.h>

#include "rq_common.cuh"

// Chunks a thread keeps in registers between the min/max pass and the
// quantization pass; chunks beyond CH*TG (groups above 32768 channels) are read
// again from memory in the second pass.
#define RQ_QA_CH 4
// Items per CTA aim at this many threads.
#define RQ_QA_CTA_TARGET 256
#define RQ_QA_MAX_TG 512

// Quantizer parameters of one part from its exact min and max (started at +0).
RQ_HD void rq_qa_params(float mn, float mx, float clip, float maxq, float *s, float *z) {
  mn = rq_mul(mn, clip);
  mx = rq_mul(mx, clip);
  if (mn == 0.0f && mx == 0.0f) {  // all-zero guard (also catches -0 from mn*clip)
    mn = -1.0f;
    mx = 1.0f;
  }
  *s = rq_div(rq_sub(mx, mn), maxq);
  *z = rq_rint(rq_div(-mn, *s));
}

// One code: clamp(rint(x / s) + z, 0, maxq) in fp32 (z is integer valued, the
// sum is exact below 2^24).
RQ_HD int rq_qa_code(float x, float s, float z, float maxq) {
  float c = rq_add(rq_rint(rq_div(x, s)), z);
  if (c < 0.0f) c = 0.0f;
  if (c > maxq) c = maxq;
  return (int)c;
}

// Two lo codes per byte: element 2i in the low nibble, 2i+1 in the high one;
// cnt < 8 (the last chunk of an odd or short lo part) leaves missing nibbles 0.
RQ_HD uint32_t rq_qa_pack_lo(const int (&c)[8], int cnt) {
  uint32_t w = 0;
RQ_UNROLL
  for (int k = 0; k < 8; k++)
    if (k < cnt) w |= (uint32_t)c[k] << (4 * k);
  return w;
}
// Hi codes, one byte each, as two little-endian words.
RQ_HD void rq_qa_pack_hi(const int (&c)[8], int cnt, uint32_t *w0, uint32_t *w1) {
  uint32_t a = 0, b = 0;
RQ_UNROLL
  for (int k = 0; k < 4; k++) {
    if (k < cnt) a |= (uint32_t)c[k] << (8 * k);
    if (k + 4 < cnt) b |= (uint32_t)c[k + 4] << (8 * k);
  }
  *w0 = a;
  *w1 = b;
}

struct rq_qa_plan {
  int64_t K, group, r, lo;  // lo = group - r channels per group
  int64_t ngroups;
  int64_t lo_bpg;           // ceil(lo/2): packed lo bytes per group
  int64_t nlo_ch, nhi_ch, nch;
  int log_tg, tg;           // threads per item
  int ipc, cta;             // items per CTA, threads per CTA
  int fast;                 // 16-byte loads, 4/8-byte stores (every access aligned)
  float maxq_lo, maxq_hi, clip;
};

RQ_HD void rq_qa_make_plan(int64_t K, int64_t group, int64_t r, int bits_lo, int bits_hi, float clip,
                           rq_qa_plan *p) {
  p->K = K;
  p->group = group;
  p->r = r;
  p->lo = group - r;
  p->ngroups = K / group;
  p->lo_bpg = (p->lo + 1) / 2;
  p->nlo_ch = (p->lo + 7) / 8;
  p->nhi_ch = (r + 7) / 8;
  p->nch = p->nlo_ch + p->nhi_ch;
  int64_t tg = rq_pow2ceil(p->nch);
  if (tg > RQ_QA_MAX_TG) tg = RQ_QA_MAX_TG;
  p->tg = (int)tg;
  p->log_tg = rq_log2i(tg);
  p->ipc = p->tg >= RQ_QA_CTA_TARGET ? 1 : RQ_QA_CTA_TARGET / p->tg;
  p->cta = p->tg * p->ipc;
  p->fast = 0;
  p->maxq_lo = (float)((1 << bits_lo) - 1);
  p->maxq_hi = (float)((1 << bits_hi) - 1);
  p->clip = clip;
}

// Chunk j of an item: part (0 lo, 1 hi), first element e0 within the part, its
// element count (<= 8) and its channel offset within the group.
RQ_HD void rq_qa_chunk(const rq_qa_plan &p, int64_t j, int *hi, int64_t *e0, int *cnt, int64_t *col) {
  if (j < p.nlo_ch) {
    *hi = 0;
    *e0 = j * 8;
    int64_t left = p.lo - *e0;
    *cnt = left < 8 ? (int)left : 8;
    *col = *e0;
  } else {
    *hi = 1;
    *e0 = (j - p.nlo_ch) * 8;
    int64_t left = p.r - *e0;
    *cnt = left < 8 ? (int)left : 8;
    *col = p.lo + *e0;
  }
}

// Byte offsets of a chunk's codes within a row of q_lo / q_hi.
RQ_HD int64_t rq_qa_lo_byte(const rq_qa_plan &p, int64_t g, int64_t e0) { return g * p.lo_bpg + e0 / 2; }
RQ_HD int64_t rq_qa_hi_byte(const rq_qa_plan &p, int64_t g, int64_t e0) { return g * p.r + e0; }

// Dequantization: where channel col of a row lives. hi = 0: byte offset in the
// q_lo row and nibble (0 low, 1 high); hi = 1: byte offset in the q_hi row.
RQ_HD void rq_dq_locate(const rq_qa_plan &p, int64_t col, int64_t *g, int *hi, int64_t *byte, int *nib) {
  *g = col / p.group;
  int64_t i = col - *g * p.group;
  if (i < p.lo) {
    *hi = 0;
    *byte = *g * p.lo_bpg + i / 2;
    *nib = (int)(i & 1);
  } else {
    *hi = 1;
    *byte = *g * p.r + (i - p.lo);
    *nib = 0;
  }
}
// y = s * (float)(q - z): the integer difference is exact, one fp32 multiply.
RQ_HD float rq_dq_value(int code, float s, int32_t z) { return rq_mul(s, (float)(code - z)); }

// ---------------------------------------------------------------------------
// Fused RMSNorm + quantization (per token, group = K): the order of the double
// sum of squares. The reference adds x_i^2 in double for i ascending; this
// kernel's fixed order is:
//   1. thread t of the row (TG threads) adds, starting from +0, the squares of
//      its chunks j = t, t+TG, t+2TG, ... (chunk order), elements ascending;
//   2. butterfly over the low min(log TG, 5) bits: p[t] <- p[t] + p[t ^ 2^k],
//      k ascending (IEEE addition is commutative, so both partners get the same
//      value and every lane holds the same sum after the last level);
//   3. more than 32 threads: the warps' sums w_0..w_{W-1} (warp order) are added
//      left to right, acc = w_0, acc = acc + w_1, ...
// The squares are exact in double (a product of two fp32 values has at most 48
// significant bits), so the two orders differ only by the roundings of the
// additions: a relative difference of a few 1e-16 in ss, which changes
// ms = (float)(ss / d) only when ss / d lies that close to a rounding boundary
// of fp32 (a fraction ~1e-8 of the rows); the GPU test computes both and
// requires the kernel to match the composition with THIS order bit for bit.
// Then, exactly as resq_rmsnorm_f32__ref: ms = (float)(ss / (double)d),
// rinv = 1.0f / sqrtf(ms + eps), a_i = x_i * rinv (then * gamma_i), fp32.
RQ_HD double rq_rms_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
RQ_HD double rq_rms_sq(float x) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn((double)x, (double)x);
#else
  return (double)x * (double)x;
#endif
}
// rinv from the sum of squares (fp32 after one rounding of ss/d).
RQ_HD float rq_rms_rinv(double ss, int64_t d, float eps) {
#if defined(__CUDA_ARCH__)
  float ms = __double2float_rn(__ddiv_rn(ss, (double)d));
  return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(ms, eps)));
#else
  float ms = (float)(ss / (double)d);
  return 1.0f / std::sqrt(ms + eps);
#endif
}
// Host model of steps 2-3 for TG per-thread partial sums p[0..TG) (p is
// overwritten); the device code performs the same additions with shuffles and
// shared memory. Returns the row's ss.
inline double rq_rms_tree_host(double *p, int tg) {
  int lb = 0;
  while ((1 << lb) < tg && lb < 5) lb++;
  for (int k = 0; k < lb; k++) {
    // one butterfly level on a copy (every lane reads its partner's old value)
    double tmp[32];
    for (int w0 = 0; w0 < tg; w0 += 32) {
      int n = tg - w0 < 32 ? tg - w0 : 32;
      for (int l = 0; l < n; l++) tmp[l] = p[w0 + l];
      for (int l = 0; l < n; l++) p[w0 + l] = rq_rms_add(tmp[l], tmp[l ^ (1 << k)]);
    }
  }
  if (tg <= 32) return p[0];
  double acc = p[0];
  for (int w = 1; w < tg / 32; w++) acc = rq_rms_add(acc, p[w * 32]);
  return acc;
}

#endif
