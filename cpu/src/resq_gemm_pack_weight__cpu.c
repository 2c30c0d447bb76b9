/* SPDX-License-Identifier: Apache-2.0
 * Weight packer of the CPU GEMM: canonical resq_qweight (ref/CONTRACT.md
 * section 11) <-> resq_qweight_cpu (the panel layout documented in resq/cpu.h).
 * Runs once per weight, offline; plain C. */
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Fill the geometry of a packed weight (not data/magic). */
static resq_status geometry(const resq_qact_params *split, int64_t N, resq_qweight_cpu *g) {
  resq_qact_layout L = {0};
  resq_status st = resq_gemm_check(split, &L);
  if (st) return st;
  if (N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): N=%lld < 0", (long long)N);
  memset(g, 0, sizeof *g);
  g->N = N;
  g->K = split->K;
  g->group = split->group;
  g->r = split->r;
  g->bits_lo = split->bits_lo;
  g->bits_hi = split->bits_hi;
  g->ngroups = L.ngroups;
  g->lo_pad = round_up(L.lo_per_group, 4);
  g->hi_pad = round_up(split->r, 4);
  g->npanels = (N + 31) / 32;
  g->panel_bytes = g->ngroups * (g->lo_pad * 16 + g->hi_pad * 32);
  int64_t np = g->npanels * 32;
  size_t off = 0;
  g->off_panels = off;
  off += (size_t)round_up(g->npanels * g->panel_bytes, 64);
  g->off_scale_lo = off;
  off += (size_t)round_up(np * 4, 64);
  g->off_scale_hi = off;
  off += (size_t)round_up(np * 4, 64);
  g->off_sum_lo = off;
  off += (size_t)round_up(g->ngroups * np * 4, 64);
  g->off_sum_hi = off;
  off += (size_t)round_up(g->ngroups * np * 4, 64);
  g->bytes = off > 0 ? off : 64;
  return RESQ_OK;
}

resq_status resq_gemm_pack_weight_size__cpu(const resq_qact_params *split, int64_t N, size_t *bytes) {
  resq_qweight_cpu g = {0};
  resq_status st = geometry(split, N, &g);
  if (st) return st;
  if (!bytes) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): NULL size pointer");
  *bytes = g.bytes;
  return RESQ_OK;
}

static int s4_at(const uint8_t *row, int64_t i) {
  int v = (i & 1) ? row[i / 2] >> 4 : row[i / 2] & 15;
  return v >= 8 ? v - 16 : v;
}

resq_status resq_gemm_pack_weight__cpu(const resq_qact_params *split, const resq_qweight *w, void *buf,
                                       size_t bytes, resq_qweight_cpu *out) {
  if (!w) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): NULL weight");
  resq_qweight_cpu g = {0};
  resq_status st = geometry(split, w->N, &g);
  if (st) return st;
  resq_qact_layout L = {0};
  resq_gemm_check(split, &L);
  const int64_t N = w->N, G = g.ngroups, lpg = L.lo_per_group, r = split->r;
  if (!out || !buf) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): NULL output");
  if ((uintptr_t)buf % 64) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): buffer is not 64-byte aligned");
  if (bytes < g.bytes)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): buffer of %zu bytes, %zu needed", bytes, g.bytes);
  if (N > 0 && ((lpg > 0 && (!w->q_lo || !w->scale_lo || !w->sum_lo)) || (r > 0 && (!w->q_hi || !w->scale_hi || !w->sum_hi))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): a weight array is NULL");
  if (N > 1 && ((lpg > 0 && w->ld_lo < L.lo_bytes) || (r > 0 && w->ld_hi < L.hi_bytes)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack (cpu): a leading dimension is smaller than the packed row");
  /* the checks the reference GEMM makes on every call, made once here */
  for (int64_t n = 0; n < N; n++) {
    if ((lpg > 0 && !isfinite(w->scale_lo[n])) || (r > 0 && !isfinite(w->scale_hi[n])))
      return resq_fail(RESQ_ERR_NONFINITE, "gemm pack (cpu): weight scale of row %lld is NaN or Inf", (long long)n);
    for (int64_t gi = 0; gi < G; gi++) {
      int32_t slo = 0, shi = 0;
      for (int64_t i = 0; i < lpg; i++) slo += s4_at(w->q_lo + n * w->ld_lo + gi * L.lo_bytes_per_group, i);
      for (int64_t i = 0; i < r; i++) shi += w->q_hi[n * w->ld_hi + gi * r + i];
      if ((lpg > 0 && slo != w->sum_lo[n * G + gi]) || (r > 0 && shi != w->sum_hi[n * G + gi]))
        return resq_fail(RESQ_ERR_INVALID_ARG,
                         "gemm pack (cpu): weight row %lld group %lld: stored code sums do not match the codes",
                         (long long)n, (long long)gi);
    }
  }
  uint8_t *base = (uint8_t *)buf;
  memset(base, 0, g.bytes);
  const int64_t np = g.npanels * 32;
  float *sl = (float *)(base + g.off_scale_lo), *sh = (float *)(base + g.off_scale_hi);
  int32_t *ul = (int32_t *)(base + g.off_sum_lo), *uh = (int32_t *)(base + g.off_sum_hi);
  for (int64_t p = 0; p < g.npanels; p++) {
    uint8_t *dst = base + g.off_panels + p * g.panel_bytes;
    for (int64_t gi = 0; gi < G; gi++) /* lo terms */
      for (int64_t s = 0; s < g.lo_pad / 4; s++, dst += 64)
        for (int l = 0; l < 16; l++)
          for (int b = 0; b < 4; b++) {
            int64_t i = 4 * s + b, n0 = 32 * p + l, n1 = n0 + 16;
            int c0 = 0, c1 = 0;
            if (i < lpg && n0 < N) c0 = s4_at(w->q_lo + n0 * w->ld_lo + gi * L.lo_bytes_per_group, i);
            if (i < lpg && n1 < N) c1 = s4_at(w->q_lo + n1 * w->ld_lo + gi * L.lo_bytes_per_group, i);
            /* low nibble: u = w + 8 (= the s4 nibble XOR 8); high nibble: s4 */
            dst[4 * l + b] = (uint8_t)(((c0 & 15) ^ 8) | ((c1 & 15) << 4));
          }
    for (int64_t gi = 0; gi < G; gi++) /* hi terms */
      for (int64_t s = 0; s < g.hi_pad / 4; s++, dst += 128)
        for (int l = 0; l < 32; l++)
          for (int b = 0; b < 4; b++) {
            int64_t i = 4 * s + b, n = 32 * p + l;
            dst[4 * l + b] = (uint8_t)((i < r && n < N) ? w->q_hi[n * w->ld_hi + gi * r + i] : 0);
          }
  }
  for (int64_t n = 0; n < N; n++) {
    if (lpg > 0) sl[n] = w->scale_lo[n];
    if (r > 0) sh[n] = w->scale_hi[n];
    for (int64_t gi = 0; gi < G; gi++) {
      if (lpg > 0) ul[gi * np + n] = w->sum_lo[n * G + gi];
      if (r > 0) uh[gi * np + n] = w->sum_hi[n * G + gi];
    }
  }
  g.magic = RESQ_QWEIGHT_CPU_MAGIC;
  g.data = buf;
  *out = g;
  return RESQ_OK;
}

resq_status resq_gemm_unpack_weight__cpu(const resq_qweight_cpu *w, const resq_qweight *out) {
  if (!w || !out || w->magic != RESQ_QWEIGHT_CPU_MAGIC || !w->data)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm unpack (cpu): not a packed CPU weight");
  if (out->N != w->N) return resq_fail(RESQ_ERR_SHAPE, "gemm unpack (cpu): N=%lld, packed N=%lld", (long long)out->N, (long long)w->N);
  resq_qact_params sp = resq_qact_default(w->K);
  sp.group = w->group;
  sp.r = w->r;
  sp.bits_lo = w->bits_lo;
  sp.bits_hi = w->bits_hi;
  resq_qact_layout L = {0};
  resq_status st = resq_gemm_check(&sp, &L);
  if (st) return st;
  const int64_t N = w->N, G = w->ngroups, lpg = L.lo_per_group, r = w->r, np = w->npanels * 32;
  if (N > 0 && ((lpg > 0 && (!out->q_lo || !out->scale_lo || !out->sum_lo)) || (r > 0 && (!out->q_hi || !out->scale_hi || !out->sum_hi))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm unpack (cpu): an output array is NULL");
  if (N > 1 && ((lpg > 0 && out->ld_lo < L.lo_bytes) || (r > 0 && out->ld_hi < L.hi_bytes)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm unpack (cpu): a leading dimension is smaller than the packed row");
  const uint8_t *base = (const uint8_t *)w->data;
  const float *sl = (const float *)(base + w->off_scale_lo), *sh = (const float *)(base + w->off_scale_hi);
  const int32_t *ul = (const int32_t *)(base + w->off_sum_lo), *uh = (const int32_t *)(base + w->off_sum_hi);
  for (int64_t n = 0; n < N; n++) {
    const uint8_t *panel = base + w->off_panels + (n / 32) * w->panel_bytes;
    int l = (int)(n % 32) % 16, high = (int)(n % 32) >= 16;
    for (int64_t gi = 0; gi < G; gi++) {
      if (lpg > 0) {
        uint8_t *dst = out->q_lo + n * out->ld_lo + gi * L.lo_bytes_per_group;
        memset(dst, 0, (size_t)L.lo_bytes_per_group);
        for (int64_t i = 0; i < lpg; i++) {
          uint8_t byte = panel[(gi * w->lo_pad / 4 + i / 4) * 64 + 4 * l + i % 4];
          int c = high ? byte >> 4 : (byte & 15) ^ 8;
          dst[i / 2] |= (uint8_t)(c << (4 * (i & 1)));
        }
        out->sum_lo[n * G + gi] = ul[gi * np + n];
      }
      if (r > 0) {
        const uint8_t *hp = panel + G * w->lo_pad * 16;
        for (int64_t i = 0; i < r; i++)
          out->q_hi[n * out->ld_hi + gi * r + i] = (int8_t)hp[(gi * w->hi_pad / 4 + i / 4) * 128 + 4 * (n % 32) + i % 4];
        out->sum_hi[n * G + gi] = uh[gi * np + n];
      }
    }
    if (lpg > 0) out->scale_lo[n] = sl[n];
    if (r > 0) out->scale_hi[n] = sh[n];
  }
  return RESQ_OK;
}
