/* SPDX-License-Identifier: Apache-2.0
 * CPU mixed INT4/INT8 GEMM on AMX tiles (the RESQ_CPU_ISA_AMX level's prefill),
 * bit-identical to resq_gemm_q4q8_{f16,f32}__ref like the vpdpbusd kernel
 * beside it (resq_gemm_q4q8_f16__cpu.c), whose driver calls it for the
 * per-token split (one group) when M >= RESQ_CPU_AMX_MIN_M.
 *
 * Why tiles, and why only for prefill. One tdpbusd multiplies a 16 x 64 u8
 * tile by a 64 x 16 s8 tile into 16 x 16 int32 (16384 multiply-adds, exact
 * like vpdpbusd: u8 x s8 products summed in int32); a core issues one about
 * every 16 cycles, 8x the multiply-adds of its two 512-bit vpdpbusd ports. On
 * the AMX Xeon guest this level was written on (2 vCPUs; no committed report:
 * the Emerald Rapids guest of reports/ did not expose AMX) oneDNN's int8 matmul
 * runs on them (brg:avx512_core_amx) at 2.65-3.66 TOPS with 2 threads, against
 * 1.5 TOPS for our vpdpbusd kernel.
 * Tiles have no 4-bit type and load only from memory, so both operands are
 * unpacked to bytes in scratch first: the activation codes once per call
 * (M x K bytes), the weight one K chunk of a few panels at a time (each weight
 * byte unpacked once per M chunk). At M >= 64 that costs a few % of the tile
 * work; at decode it would double the bytes a call moves, so M < 64 stays on
 * the vpdpbusd kernel, which streams the packed 4-bit weight directly.
 *
 * Data flow (one group: the lo part, K_lo = K - r columns of u4 x s4, then the
 * hi part, r columns of u8 x s8):
 *  1. A: every row's lo codes unpacked to u8, zero-padded to a multiple of 64
 *     columns (KL), and its hi codes copied, padded to KH; rows M..Mp-1 (Mp =
 *     M rounded up to 32) are zeros. Row-major, so a 16-row A tile is one
 *     tileloadd with stride KL (or KH).
 *  2. B, per thread: for NB panels (32 outputs each) and a chunk of KC
 *     columns, the panel's packed steps of 4 columns become two 64 x 16 tiles'
 *     rows: "row" s of half h holds, for the 16 outputs 32p + 16h + l, the 4
 *     weights of columns 4s..4s+3 as s8 (dword l) -- the VNNI order tdpbusd
 *     reads. lo half 0: low nibble u - 8; lo half 1: the high nibble, sign
 *     extended; hi: the packed bytes as they are (resq/cpu.h layout).
 *  3. Per 32 x 32 output block: 4 C tiles (tmm0..3), A tiles tmm4/5 (rows
 *     0..15, 16..31), B tiles tmm6/7 (outputs 0..15, 16..31), 4 tdpbusd per
 *     64 columns. C is stored to an int32 scratch between chunks and reloaded
 *     (tileloadd), so each chunk's B stays in L2 and each 32-row A chunk in
 *     L1 while NB panels pass over it.
 *  4. After the last chunk of a part, the exact int32 sums become the
 *     reference's term t = (a*w)*(float)(acc - z*sum) and y = t (lo) or
 *     y + t (hi); then y + bias, RNE to f16 (vcvtps2ph) or f32 -- the same
 *     fp32 sequence, operation by operation, as every other kernel.
 * Integer ranges: the contract's size limits (ref/CONTRACT.md, section 11:
 * K_lo <= 2^23, K_hi <= 32768) keep every partial sum and z * sum inside int32,
 * exactly as in the reference, so tile accumulation in any order is exact. The
 * lo part's u8 x s8 products here are u4 x s4 values (|q| <= 15 * 8). */
#include <string.h>

#include "cpu_internal.h"
#include "resq/dtype.h"

#if RESQ_CPU_X86
#include <immintrin.h>

#define NB_MAX 4   /* panels per thread block: 128 outputs */
#define KC_MAX 1024 /* columns per chunk: a 32-row A chunk is 32 KiB (L1), B 4 x 32 KiB (L2) */
#define MC_MAX 512 /* rows per M chunk: int32 and fp32 state of MC x 128 outputs, 256 KiB each */

typedef struct amx_plan {
  int64_t M, Mp, N, lpg, r, KL, KH, lo_steps, hi_steps, lo_bytes;
  const resq_qact *x;
  const uint8_t *panels;
  int64_t panel_bytes, npanels;
  const float *ws_lo, *ws_hi, *bias;
  const int32_t *wsum_lo, *wsum_hi;
  float *yf;
  uint16_t *yh;
  int64_t ldy;
  uint8_t *A_lo, *A_hi;
  char *scr;          /* per thread: scr_bytes */
  size_t scr_bytes;
  int nb, mc, kc;     /* panels per block, rows per M chunk, columns per K chunk */
} amx_plan;

typedef struct tilecfg {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tilecfg;

/* The tile intrinsics are asm statements; tileloadd declares no memory input, so a compiler
 * barrier orders the plain stores that fill its source (and the tile config) before it. */
#define AMX_BARRIER() __asm__ volatile("" ::: "memory")

RESQ_AMX_BEGIN

static void task_unpack_a(void *arg, int tid, int nt) {
  const amx_plan *P = (const amx_plan *)arg;
  int64_t b, e;
  resq_cpu_range(P->Mp, tid, nt, &b, &e);
  const resq_qact *x = P->x;
  for (int64_t m = b; m < e; m++) {
    if (P->KL > 0) {
      uint8_t *d = P->A_lo + m * P->KL;
      int64_t len = 0;
      if (m < P->M) {
        (void)resq_cpu_unpack_lo_avx512(x->q_lo + m * x->ld_lo, P->lpg, d);
        len = P->lpg;
      }
      memset(d + len, 0, (size_t)(P->KL - len));
    }
    if (P->KH > 0) {
      uint8_t *d = P->A_hi + m * P->KH;
      int64_t len = 0;
      if (m < P->M) {
        memcpy(d, x->q_hi + m * x->ld_hi, (size_t)P->r);
        len = P->r;
      }
      memset(d + len, 0, (size_t)(P->KH - len));
    }
  }
}

/* Steps [s0, s0 + ns) (of 4 columns) of part `hi` of panel p -> B[h][s - s0][64] for h = 0, 1. */
static void unpack_b(const amx_plan *P, int64_t p, int hi, int64_t s0, int64_t ns, uint8_t *B) {
  const uint8_t *W = P->panels + p * P->panel_bytes + (hi ? P->lo_steps * 64 : 0);
  const int64_t have = hi ? P->hi_steps : P->lo_steps;
  uint8_t *B0 = B, *B1 = B + ns * 64;
  const __m512i m4 = _mm512_set1_epi8(0x0F), c8 = _mm512_set1_epi8(8);
  for (int64_t s = 0; s < ns; s++) {
    const int64_t g = s0 + s;
    __m512i v0 = _mm512_setzero_si512(), v1 = _mm512_setzero_si512();
    if (g < have) {
      if (hi) {
        v0 = _mm512_loadu_si512(W + g * 128);
        v1 = _mm512_loadu_si512(W + g * 128 + 64);
      } else {
        const __m512i v = _mm512_loadu_si512(W + g * 64);
        /* low nibble u = w + 8 -> w; high nibble h (s4) -> (h ^ 8) - 8 */
        v0 = _mm512_sub_epi8(_mm512_and_si512(v, m4), c8);
        v1 = _mm512_sub_epi8(_mm512_xor_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), c8), c8);
      }
    }
    _mm512_store_si512(B0 + s * 64, v0);
    _mm512_store_si512(B1 + s * 64, v1);
  }
}

/* The part's fp32 term for rows [m0, m0 + mr) and the block's nb*32 outputs at column c0
 * (scales and sums are padded to npanels*32 with zeros, so whole vectors are read). */
static void part_finish(const amx_plan *P, int hi, int first, int64_t m0, int64_t mr, int64_t c0, int nout,
                        const int32_t *acc, float *y, int64_t ld) {
  const resq_qact *x = P->x;
  const float *xs = hi ? x->scale_hi : x->scale_lo, *ws = (hi ? P->ws_hi : P->ws_lo) + c0;
  const int32_t *xz = hi ? x->zero_hi : x->zero_lo, *wsum = (hi ? P->wsum_hi : P->wsum_lo) + c0;
  for (int64_t i = 0; i < mr; i++) {
    const __m512 av = _mm512_set1_ps(xs[m0 + i]);
    const __m512i z = _mm512_set1_epi32(xz[m0 + i]);
    for (int l = 0; l < nout; l += 16) {
      const __m512i s = _mm512_sub_epi32(_mm512_loadu_si512(acc + i * ld + l),
                                         _mm512_mullo_epi32(z, _mm512_loadu_si512(wsum + l)));
      __m512 t = _mm512_mul_ps(_mm512_mul_ps(av, _mm512_loadu_ps(ws + l)), _mm512_cvtepi32_ps(s));
      if (!first) t = _mm512_add_ps(_mm512_loadu_ps(y + i * ld + l), t);
      _mm512_storeu_ps(y + i * ld + l, t);
    }
  }
}

static void block_store(const amx_plan *P, int64_t m0, int64_t mr, int64_t c0, int nout, const float *y, int64_t ld) {
  for (int l = 0; l < nout; l += 16) {
    const int64_t nc = P->N - (c0 + l);
    if (nc <= 0) break;
    const __mmask16 m = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
    const __m512 b = P->bias ? _mm512_maskz_loadu_ps(m, P->bias + c0 + l) : _mm512_setzero_ps();
    for (int64_t i = 0; i < mr; i++) {
      __m512 v = _mm512_loadu_ps(y + i * ld + l);
      if (P->bias) v = _mm512_add_ps(v, b);
      if (P->yf) _mm512_mask_storeu_ps(P->yf + (m0 + i) * P->ldy + c0 + l, m, v);
      else
        _mm256_mask_storeu_epi16(P->yh + (m0 + i) * P->ldy + c0 + l, m,
                                 _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
}

static void task_compute(void *arg, int tid, int nt) {
  const amx_plan *P = (const amx_plan *)arg;
  int64_t p0, p1;
  resq_cpu_range(P->npanels, tid, nt, &p0, &p1);
  if (p0 >= p1) return;
  tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  AMX_BARRIER();
  _tile_loadconfig(&cfg);

  const int64_t ld = (int64_t)P->nb * 32; /* outputs per row of the state */
  char *scr = P->scr + (size_t)tid * P->scr_bytes;
  int32_t *acc = (int32_t *)(void *)scr;
  float *y = (float *)(void *)(scr + (size_t)P->mc * (size_t)ld * 4);
  uint8_t *B = (uint8_t *)(scr + (size_t)P->mc * (size_t)ld * 8);
  const int64_t bstride = (int64_t)P->kc / 4 * 128; /* bytes of one panel's chunk (both halves) */

  for (int64_t pb = p0; pb < p1; pb += P->nb) {
    const int nb = (int)(p1 - pb < P->nb ? p1 - pb : P->nb);
    const int64_t c0 = pb * 32;
    for (int64_t mb0 = 0; mb0 < P->Mp; mb0 += P->mc) {
      const int64_t mc = P->Mp - mb0 < P->mc ? P->Mp - mb0 : P->mc;
      const int64_t mv = P->M - mb0 < mc ? P->M - mb0 : mc; /* valid rows */
      int first = 1;
      for (int hi = 0; hi < 2; hi++) {
        const int64_t Kt = hi ? P->KH : P->KL;
        if (Kt == 0) continue;
        const uint8_t *Ab = (hi ? P->A_hi : P->A_lo) + mb0 * Kt;
        for (int64_t k0 = 0; k0 < Kt; k0 += P->kc) {
          const int64_t kl = Kt - k0 < P->kc ? Kt - k0 : P->kc, ns = kl / 4;
          for (int q = 0; q < nb; q++) unpack_b(P, pb + q, hi, k0 / 4, ns, B + q * bstride);
          AMX_BARRIER();
          for (int64_t mb = 0; mb < mc; mb += 32) {
            const uint8_t *A0 = Ab + mb * Kt + k0, *A1 = A0 + 16 * Kt;
            for (int q = 0; q < nb; q++) {
              int32_t *C = acc + mb * ld + q * 32;
              if (k0 == 0) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
              } else {
                _tile_loadd(0, C, ld * 4);
                _tile_loadd(1, C + 16, ld * 4);
                _tile_loadd(2, C + 16 * ld, ld * 4);
                _tile_loadd(3, C + 16 * ld + 16, ld * 4);
              }
              const uint8_t *B0 = B + q * bstride, *B1 = B0 + ns * 64;
              for (int64_t kk = 0; kk < kl; kk += 64) {
                _tile_loadd(4, A0 + kk, Kt);
                _tile_loadd(5, A1 + kk, Kt);
                _tile_loadd(6, B0 + kk * 16, 64);
                _tile_loadd(7, B1 + kk * 16, 64);
                _tile_dpbusd(0, 4, 6);
                _tile_dpbusd(1, 4, 7);
                _tile_dpbusd(2, 5, 6);
                _tile_dpbusd(3, 5, 7);
              }
              _tile_stored(0, C, ld * 4);
              _tile_stored(1, C + 16, ld * 4);
              _tile_stored(2, C + 16 * ld, ld * 4);
              _tile_stored(3, C + 16 * ld + 16, ld * 4);
            }
          }
        }
        part_finish(P, hi, first, mb0, mv, c0, nb * 32, acc, y, ld);
        first = 0;
      }
      block_store(P, mb0, mv, c0, nb * 32, y, ld);
    }
  }
  _tile_release();
}

RESQ_AMX_END

resq_status resq_cpu_gemm_q4q8_amx(const resq_qact_params *p, const resq_qact_layout *L, int64_t M,
                                   const resq_qact *x, const resq_qweight_cpu *w, const float *bias, float *yf,
                                   uint16_t *yh, int64_t ldy) {
  amx_plan P;
  memset(&P, 0, sizeof P);
  P.M = M;
  P.Mp = (M + 31) / 32 * 32;
  P.N = w->N;
  P.lpg = L->lo_per_group;
  P.r = p->r;
  P.KL = (P.lpg + 63) / 64 * 64;
  P.KH = (P.r + 63) / 64 * 64;
  P.lo_steps = w->lo_pad / 4;
  P.hi_steps = w->hi_pad / 4;
  P.x = x;
  const uint8_t *base = (const uint8_t *)w->data;
  P.panels = base + w->off_panels;
  P.panel_bytes = w->panel_bytes;
  P.npanels = w->npanels;
  P.ws_lo = (const float *)(base + w->off_scale_lo);
  P.ws_hi = (const float *)(base + w->off_scale_hi);
  P.wsum_lo = (const int32_t *)(base + w->off_sum_lo);
  P.wsum_hi = (const int32_t *)(base + w->off_sum_hi);
  P.bias = bias;
  P.yf = yf;
  P.yh = yh;
  P.ldy = ldy;
  /* tuning overrides (tests use small values to cross every block boundary) */
  P.nb = (int)resq_cpu_env_i64("RESQ_CPU_AMX_NB", 4, 1);
  if (P.nb > NB_MAX) P.nb = NB_MAX;
  P.kc = (int)(resq_cpu_env_i64("RESQ_CPU_AMX_KC", KC_MAX, 64) / 64 * 64);
  if (P.kc > KC_MAX) P.kc = KC_MAX;
  P.mc = (int)(resq_cpu_env_i64("RESQ_CPU_AMX_MC", MC_MAX, 32) / 32 * 32);
  if (P.mc > MC_MAX) P.mc = MC_MAX;
  int nt = resq_cpu_get_threads();
  if (nt > P.npanels) nt = (int)P.npanels;
  if (nt < 1) nt = 1;
  const int nt_max = resq_cpu_get_threads();
  P.scr_bytes = (size_t)P.mc * (size_t)P.nb * 32 * 8 + (size_t)P.nb * (size_t)P.kc * 32;
  const size_t a_bytes = (size_t)P.Mp * (size_t)(P.KL + P.KH);

  resq_cpu_lock();
  uint8_t *A = (uint8_t *)resq_cpu_workspace(0, a_bytes + 64);
  char *scr = (char *)resq_cpu_workspace(1, (size_t)nt_max * P.scr_bytes);
  if (!A || !scr) {
    resq_cpu_unlock();
    return resq_fail(RESQ_ERR_NOMEM, "gemm (cpu, amx): out of memory (workspace of %zu + %zu bytes)", a_bytes,
                     (size_t)nt_max * P.scr_bytes);
  }
  P.A_lo = A;
  P.A_hi = A + (size_t)P.Mp * (size_t)P.KL;
  P.scr = scr;
  resq_cpu_parallel(task_unpack_a, &P, nt_max);
  resq_cpu_parallel(task_compute, &P, nt);
  resq_cpu_unlock();
  return RESQ_OK;
}

#endif /* RESQ_CPU_X86 */
