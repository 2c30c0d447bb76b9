// SPDX-License-Identifier: Apache-2.0
// Host emulation of the CUDA mixed GEMM (cuda/src/rq_gemm*.cuh, resq/cuda_gemm.h). Runs on any
// machine, no GPU needed (ctest label cpu).
//
// The kernels have only been COMPILED on this project's machines (no GPU); this test is the
// evidence that their data movement and arithmetic are right. It replays a whole launch CTA by
// CTA and thread by thread with the kernel's own __host__ __device__ functions (chunk
// assignment, swizzled shared-memory offsets, ldmatrix lane addresses, B masks, the sm_90 nibble
// unpacking, the segment walk, the cp.async pipeline order, the fold, split-K publish/final,
// the stores) and replaces only the three warp-level PTX instructions by emulators written
// from the PTX ISA text, independently of the kernel code:
//   ldmatrix.sync.aligned.m8n8.x4.b16: lanes 8q..8q+7 address the rows of matrix q; lane l
//     receives the 32-bit word at byte 4*(l%4) of row l/4 of matrix q in register q;
//   mma.m16n8k64 .u4.s4 / mma.m16n8k32 .u8.s8: every fragment element is placed by the ISA's
//     groupID / threadID_in_group formulas ("Matrix Fragments for mma.m16n8k64 / m16n8k32"),
//     elements low to high within each .b32 register; D = A*B + C in exact integers.
// Outputs are compared bit for bit with resq_gemm_q4q8_{f16,f32}__ref, on both tile configs,
// split-K 1..4 (splits run in a random order), the sm_80 (native k64) and sm_90 (unpacked k32)
// MMA paths, per-token / pure INT4 / all-INT8 / grouped splits, every activation alignment
// granule, and the int32 extremes at the K limits. What this cannot show: hardware behaviour
// that differs from the ISA text, races (the emulation is sequential), and performance.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include "resq_check.h"
}
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "rq_gemm.cuh"

// ================================= PTX emulators (from the ISA) =================================

static int g_emu_bad = 0;  // out-of-range smem access or int32 overflow inside an emulated MMA

// ldmatrix .m8n8 .x4 .b16 (non-transposed) from a shared-memory image of `bytes` bytes.
static void emu_ldsm_x4(const uint8_t *smem, size_t bytes, const uint32_t addr[32], uint32_t out[32][4]) {
  for (int q = 0; q < 4; q++)
    for (int l = 0; l < 32; l++) {
      uint32_t row = addr[8 * q + l / 4];
      if (row % 16 || row + 16 > bytes) {  // rows must be 16-byte aligned and inside
        g_emu_bad++;
        out[l][q] = 0;
        continue;
      }
      uint32_t v;
      memcpy(&v, smem + row + 4 * (l % 4), 4);
      out[l][q] = v;
    }
}

static int u4_of(uint32_t reg, int e) { return (int)((reg >> (4 * e)) & 15u); }
static int s4_of(uint32_t reg, int e) {
  int v = u4_of(reg, e);
  return v >= 8 ? v - 16 : v;
}
static int u8_of(uint32_t reg, int e) { return (int)((reg >> (8 * e)) & 255u); }
static int s8_of(uint32_t reg, int e) { return (int)(int8_t)(uint8_t)((reg >> (8 * e)) & 255u); }

static void emu_store_d(const int A[16][64], const int B[64][8], int K, int32_t c[32][4]) {
  for (int lane = 0; lane < 32; lane++) {
    int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 4; i++) {
      int row = i < 2 ? g : g + 8, col = t * 2 + (i & 1);
      int64_t d = c[lane][i];
      for (int k = 0; k < K; k++) d += (int64_t)A[row][k] * B[k][col];
      if (d < INT32_MIN || d > INT32_MAX) g_emu_bad++;
      c[lane][i] = (int32_t)d;
    }
  }
}

// mma.sync.aligned.m16n8k64.row.col.s32.u4.s4.s32: a 4 x .b32 of 8 u4 (a0..a31), b 2 x .b32 of
// 8 s4 (b0..b15).
static void emu_mma_k64_u4s4(const uint32_t a[32][4], const uint32_t b[32][2], int32_t c[32][4]) {
  int A[16][64], B[64][8];
  for (int lane = 0; lane < 32; lane++) {
    int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 32; i++) {
      int row = (i < 8 || (16 <= i && i < 24)) ? g : g + 8;
      int col = i < 16 ? t * 8 + (i & 7) : t * 8 + (i & 7) + 32;
      A[row][col] = u4_of(a[lane][i / 8], i % 8);
    }
    for (int i = 0; i < 16; i++) {
      int row = i < 8 ? t * 8 + (i & 7) : t * 8 + (i & 7) + 32;
      B[row][g] = s4_of(b[lane][i / 8], i % 8);
    }
  }
  emu_store_d(A, B, 64, c);
}

// mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32: a 4 x .b32 of 4 u8 (a0..a15), b 2 x .b32 of
// 4 s8 (b0..b7).
static void emu_mma_k32_u8s8(const uint32_t a[32][4], const uint32_t b[32][2], int32_t c[32][4]) {
  int A[16][64], B[64][8];
  for (int lane = 0; lane < 32; lane++) {
    int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 16; i++) {
      int row = (i < 4 || (8 <= i && i < 12)) ? g : g + 8;
      int col = i < 8 ? t * 4 + (i & 3) : t * 4 + (i & 3) + 16;
      A[row][col] = u8_of(a[lane][i / 4], i % 4);
    }
    for (int i = 0; i < 8; i++) {
      int row = i < 4 ? t * 4 + (i & 3) : t * 4 + (i & 3) + 16;
      B[row][g] = s8_of(b[lane][i / 4], i % 4);
    }
  }
  emu_store_d(A, B, 32, c);
}

// The sm_90 path of rq_mma_u4s4 (rq_gemm_kernel.cuh): even nibbles, then odd nibbles, as two
// u8.s8 MMAs, with the kernel's unpack functions.
static void emu_mma_k64_sm90(const uint32_t a[32][4], const uint32_t b[32][2], int32_t c[32][4]) {
  uint32_t ae[32][4], ao[32][4], be[32][2], bo[32][2];
  for (int l = 0; l < 32; l++) {
    for (int j = 0; j < 4; j++) {
      ae[l][j] = rq_u4_even(a[l][j]);
      ao[l][j] = rq_u4_odd(a[l][j]);
    }
    for (int j = 0; j < 2; j++) {
      be[l][j] = rq_s4_even(b[l][j]);
      bo[l][j] = rq_s4_odd(b[l][j]);
    }
  }
  emu_mma_k32_u8s8(ae, be, c);
  emu_mma_k32_u8s8(ao, bo, c);
}

// ====================================== CTA emulator ===========================================

struct EmuOpts {
  int sm90;            // emulate the sm_90 lo-step path
  int skip_idle_warps; // skip warps whose rows are all >= M or columns all >= N (outputs unaffected)
};

template <class C>
struct Emu {
  typedef RqGemmShape<C> S;
  typedef int32_t Acc[S::MI][S::NJ][4];
  typedef float Out[S::MI][S::NJ][4];
  struct AccBox {
    Acc v;
  };
  struct OutBox {
    Out v;
  };
  const RqGemmPlan &P;
  EmuOpts o;
  size_t wq_bytes;
  std::vector<uint8_t> smem;
  std::vector<uint8_t> written;
  std::vector<AccBox> accb;
  std::vector<OutBox> yb;
  long bad_align = 0, bad_bounds = 0, bad_cover = 0;
  // how often each global byte was loaded over the whole grid (activation parts, weight stream)
  std::vector<uint8_t> cnt_x[2], cnt_w;  // tiles per launch here < 255
  Emu(const RqGemmPlan &plan, EmuOpts opts, size_t wqb)
      : P(plan), o(opts), wq_bytes(wqb), smem((size_t)C::STAGES * S::STAGE_BYTES), written(smem.size()), accb(S::THREADS),
        yb(S::THREADS) {
    cnt_x[0].assign((size_t)(P.M * P.ld_lo), 0);
    cnt_x[1].assign((size_t)(P.M * P.ld_hi), 0);
    cnt_w.assign(wq_bytes, 0);
  }
  // Every valid activation byte loaded once per tile column, nothing else of a row; every weight
  // byte of the covered rows and k-tiles once per tile row, nothing else.
  long coverage_errors() const {
    long bad = 0;
    for (int part = 0; part < 2; part++) {
      const int64_t ld = part ? P.ld_hi : P.ld_lo, nb = part ? P.hi_bytes : P.lo_bytes;
      for (int64_t m = 0; m < P.M; m++)
        for (int64_t k = 0; k < ld; k++) bad += cnt_x[part][m * ld + k] != (k < nb ? P.tiles_n : 0);
    }
    // covered bytes exactly tiles_m times each, and no other byte (the total matches)
    uint64_t total = 0, covered = 0;
    for (size_t i = 0; i < wq_bytes; i++) total += cnt_w[i];
    for (int64_t n = 0; n < (int64_t)P.tiles_n * C::BN; n++)
      for (int64_t k = 0; k < (int64_t)P.ktiles * C::BK; k++, covered++) bad += cnt_w[rq_w_offset(n, k, P.kblocks)] != P.tiles_m;
    bad += total != covered * (uint64_t)P.tiles_m;
    return bad;
  }
  Acc &acc_of(int tid) { return accb[tid].v; }
  Out &y_of(int tid) { return yb[tid].v; }

  bool warp_idle(int warp, int64_t m0, int64_t n0) const {
    if (!o.skip_idle_warps) return false;
    int wm = warp / C::WARPS_N, wn = warp % C::WARPS_N;
    return m0 + wm * S::WTM >= P.M || n0 + wn * S::WTN >= P.N;
  }

  void run(int pid, int split) {
    int tm, tn, kt0, kt1;
    rq_tile_of(pid, P.tiles_m, P.tiles_n, &tm, &tn);
    rq_split_range(P.ktiles, P.splits, split, &kt0, &kt1);
    const int64_t m0 = (int64_t)tm * C::BM, n0 = (int64_t)tn * C::BN;
    for (int t = 0; t < S::THREADS; t++)
      for (int i = 0; i < S::MI; i++)
        for (int j = 0; j < S::NJ; j++)
          for (int e = 0; e < 4; e++) {
            acc_of(t)[i][j][e] = 0;
            y_of(t)[i][j][e] = rq_y_start();
          }
    const int nw = S::THREADS / 32;
    std::vector<int> dirty(nw, 0), cur(nw, 0);

    auto load = [&](int kt, int stage) {
      uint8_t *base = smem.data() + (size_t)stage * S::STAGE_BYTES;
      uint8_t *wr = written.data() + (size_t)stage * S::STAGE_BYTES;
      memset(base, 0xa5, S::STAGE_BYTES);  // stale bytes would change the result
      memset(wr, 0, S::STAGE_BYTES);
      for (int tid = 0; tid < S::THREADS; tid++) {
        auto cpa = [&](uint32_t dst, const RqASrc &src) {
          if (dst % 16 || dst + 16 > (uint32_t)S::A_BYTES) {
            bad_bounds++;
            return;
          }
          const uint8_t *pb = src.part ? P.xhi : P.xlo;
          if (src.valid) {
            uintptr_t at = (uintptr_t)(pb + src.off);
            // the kernel issues cp.async of `gran` bytes (16/8/4) at at + k*gran: aligned?
            if (P.gran > 1 && at % (uintptr_t)P.gran) bad_align++;
            // reads stay inside the row's valid bytes of that part
            const int64_t ld = src.part ? P.ld_hi : P.ld_lo, nb = src.part ? P.hi_bytes : P.lo_bytes;
            if (src.off < 0 || src.off / ld >= P.M || src.off % ld + src.valid > nb) {
              bad_bounds++;
              return;
            }
            for (int b = 0; b < src.valid; b++) cnt_x[src.part][src.off + b]++;
            memcpy(base + dst, pb + src.off, (size_t)src.valid);
          }
          memset(base + dst + src.valid, 0, (size_t)(16 - src.valid));
          for (int b = 0; b < 16; b++) wr[dst + b]++;
        };
        auto cpb = [&](uint32_t dst, int64_t woff) {
          if (dst % 16 || dst < (uint32_t)S::A_BYTES || dst + 16 > (uint32_t)S::STAGE_BYTES || woff % 16 ||
              woff < 0 || (size_t)woff + 16 > wq_bytes) {
            bad_bounds++;
            return;
          }
          memcpy(base + dst, P.wq + woff, 16);
          for (int b = 0; b < 16; b++) wr[dst + b]++, cnt_w[woff + b]++;
        };
        rq_load_stage<C>(P, tid, kt, m0, n0, cpa, cpb);
      }
      for (int b = 0; b < S::STAGE_BYTES; b++) bad_cover += wr[b] != 1;  // every byte exactly once
    };
    auto commit = [&]() {};
    auto wait_sync = [&]() {};
    auto compute = [&](int kt, int stage) {
      const uint8_t *sa = smem.data() + (size_t)stage * S::STAGE_BYTES;
      for (int warp = 0; warp < nw; warp++) {
        if (warp_idle(warp, m0, n0)) continue;
        const int wm = warp / C::WARPS_N, wn = warp % C::WARPS_N;
        for (int ks = 0; ks < S::KT; ks++) {
          const int s = kt * S::KT + ks;
          if (s >= P.steps) break;
          static uint32_t af[S::MI][32][4], bf[S::NJ][32][2];
          uint32_t addr[32], out[32][4];
          for (int i = 0; i < S::MI; i++) {
            for (int l = 0; l < 32; l++) addr[l] = rq_ldsm_a_addr(l, wm * S::WTM + 16 * i, ks, S::CH);
            emu_ldsm_x4(sa, S::A_BYTES, addr, out);
            memcpy(af[i], out, sizeof out);
          }
          for (int jj = 0; jj < S::NJ / 2; jj++) {
            for (int l = 0; l < 32; l++) addr[l] = rq_ldsm_b_addr(l, wn * S::WTN + 16 * jj, ks, S::CH);
            emu_ldsm_x4(sa + S::A_BYTES, S::STAGE_BYTES - S::A_BYTES, addr, out);
            for (int l = 0; l < 32; l++) rq_split_b(out[l], bf[2 * jj][l], bf[2 * jj + 1][l]);
          }
          auto mma = [&](bool lo, int e_lo, int e_hi, int seg) {
            const bool full = e_lo == 0 && e_hi == (lo ? 64 : 32);
            for (int j = 0; j < S::NJ; j++) {
              uint32_t b[32][2];
              for (int l = 0; l < 32; l++) {
                b[l][0] = bf[j][l][0] & (full ? 0xffffffffu : rq_bmask(lo, l, 0, e_lo, e_hi));
                b[l][1] = bf[j][l][1] & (full ? 0xffffffffu : rq_bmask(lo, l, 1, e_lo, e_hi));
              }
              for (int i = 0; i < S::MI; i++) {
                int32_t c[32][4];
                for (int l = 0; l < 32; l++) memcpy(c[l], acc_of(warp * 32 + l)[i][j], sizeof c[l]);
                if (!lo)
                  emu_mma_k32_u8s8(af[i], b, c);
                else if (o.sm90)
                  emu_mma_k64_sm90(af[i], b, c);
                else
                  emu_mma_k64_u4s4(af[i], b, c);
                for (int l = 0; l < 32; l++) memcpy(acc_of(warp * 32 + l)[i][j], c[l], sizeof c[l]);
              }
            }
            cur[warp] = seg;
            dirty[warp] = 1;
          };
          auto flush = [&](int seg) { flush_warp(warp, seg, m0, n0, dirty); };
          rq_step_segments(P, s, mma, flush);
        }
      }
    };
    rq_pipeline<C::STAGES>(kt0, kt1, load, commit, wait_sync, compute);

    if (!C::SPLIT || P.splits == 1) {
      for (int tid = 0; tid < S::THREADS; tid++) rq_store_thread<C>(P, tid / 32, tid % 32, m0, n0, y_of(tid));
      return;
    }
    for (int warp = 0; warp < nw; warp++)
      if (dirty[warp]) flush_warp(warp, cur[warp], m0, n0, dirty);
    if (++P.cnt[pid] != (unsigned)P.splits) return;
    for (int tid = 0; tid < S::THREADS; tid++) rq_split_final_thread<C>(P, tid / 32, tid % 32, m0, n0);
    P.cnt[pid] = 0;
  }

  void flush_warp(int warp, int seg, int64_t m0, int64_t n0, std::vector<int> &dirty) {
    for (int l = 0; l < 32; l++) {
      int tid = warp * 32 + l;
      if (C::SPLIT && P.splits > 1)
        rq_publish_thread<C>(P, seg, warp, l, m0, n0, acc_of(tid));
      else
        rq_fold_thread<C>(P, seg, warp, l, m0, n0, acc_of(tid), y_of(tid));
      memset(acc_of(tid), 0, sizeof(Acc));
    }
    dirty[warp] = 0;
  }
};

// Run the whole grid (splits of a tile in a random order).
template <class C>
static void emu_grid(const RqGemmPlan &P, EmuOpts o, size_t wq_bytes, resq_rng *rng, long *bad) {
  Emu<C> E(P, o, wq_bytes);
  std::vector<int> order(P.splits);
  for (int pid = 0; pid < P.tiles_m * P.tiles_n; pid++) {
    for (int s = 0; s < P.splits; s++) order[s] = s;
    for (int s = P.splits - 1; s > 0; s--) {
      int k = (int)resq_rng_below(rng, (uint64_t)(s + 1));
      int t = order[s];
      order[s] = order[k];
      order[k] = t;
    }
    for (int s = 0; s < P.splits; s++) E.run(pid, order[s]);
  }
  const long cov = E.coverage_errors();
  *bad = E.bad_align + E.bad_bounds + E.bad_cover + cov;
  if (*bad)
    printf("  emulator: %ld misaligned cp.async, %ld out-of-bounds chunks, %ld stage bytes not written exactly once, "
           "%ld global bytes loaded the wrong number of times\n",
           E.bad_align, E.bad_bounds, E.bad_cover, cov);
}

// ====================================== problems ===============================================

static void *xmalloc(size_t n) {
  void *p = aligned_alloc(64, (n + 64) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", n);
    exit(2);
  }
  memset(p, 0, (n + 64) / 64 * 64 + 64);
  return p;
}

enum Fill { FILL_RANDOM = 0, FILL_MIN_ACC, FILL_MAX_CORR, FILL_POS };

struct Prob {
  resq_qact_params p;
  resq_qact_layout L;
  int64_t M, N;
  resq_qact x;
  resq_qweight w;
  int8_t *codes;
  float *wsl, *wsh, *bias;
  uint8_t *xlo_buf, *xhi_buf;  // allocations behind x.q_lo / x.q_hi (which may be offset)
  resq_qweight_cuda wc;
  void *wbuf;
};

// ld_extra: bytes added to the activation row strides; xoff: byte offset of q_lo / q_hi from an
// aligned allocation (tests the load granules).
static bool prob_alloc(Prob *P, int64_t M, int64_t N, int64_t K, int64_t group, int64_t r, int bl, int bh,
                       int64_t ld_extra, int xoff) {
  memset(P, 0, sizeof *P);
  P->p = resq_qact_default(K);
  P->p.group = group;
  P->p.r = r;
  P->p.bits_lo = bl;
  P->p.bits_hi = bh;
  if (resq_gemm_check(&P->p, &P->L) != RESQ_OK) return false;
  P->M = M;
  P->N = N;
  int64_t G = P->L.ngroups;
  P->x.ld_lo = P->L.lo_bytes + ld_extra;
  P->x.ld_hi = P->L.hi_bytes + ld_extra;
  P->xlo_buf = (uint8_t *)xmalloc((size_t)(M * P->x.ld_lo) + 16);
  P->xhi_buf = (uint8_t *)xmalloc((size_t)(M * P->x.ld_hi) + 16);
  P->x.q_lo = P->xlo_buf + xoff;
  P->x.q_hi = P->xhi_buf + xoff;
  P->x.scale_lo = (float *)xmalloc((size_t)(M * G) * 4);
  P->x.scale_hi = (float *)xmalloc((size_t)(M * G) * 4);
  P->x.zero_lo = (int32_t *)xmalloc((size_t)(M * G) * 4);
  P->x.zero_hi = (int32_t *)xmalloc((size_t)(M * G) * 4);
  P->w.N = N;
  P->w.q_lo = (uint8_t *)xmalloc((size_t)(N * P->L.lo_bytes));
  P->w.ld_lo = P->L.lo_bytes;
  P->w.q_hi = (int8_t *)xmalloc((size_t)(N * P->L.hi_bytes));
  P->w.ld_hi = P->L.hi_bytes;
  P->w.scale_lo = (float *)xmalloc((size_t)N * 4);
  P->w.scale_hi = (float *)xmalloc((size_t)N * 4);
  P->w.sum_lo = (int32_t *)xmalloc((size_t)(N * G) * 4);
  P->w.sum_hi = (int32_t *)xmalloc((size_t)(N * G) * 4);
  P->codes = (int8_t *)xmalloc((size_t)(N * K));
  P->wsl = (float *)xmalloc((size_t)N * 4);
  P->wsh = (float *)xmalloc((size_t)N * 4);
  P->bias = (float *)xmalloc((size_t)N * 4);
  return true;
}

static void prob_free(Prob *P) {
  free(P->xlo_buf), free(P->xhi_buf), free(P->x.scale_lo), free(P->x.scale_hi), free(P->x.zero_lo), free(P->x.zero_hi);
  free(P->w.q_lo), free(P->w.q_hi), free(P->w.scale_lo), free(P->w.scale_hi), free(P->w.sum_lo), free(P->w.sum_hi);
  free(P->codes), free(P->wsl), free(P->wsh), free(P->bias), free(P->wbuf);
}

static void fill(Prob *P, resq_rng *r, Fill f) {
  const int64_t K = P->p.K, G = P->L.ngroups, Klo = G * P->L.lo_per_group;
  const int ml = resq_qmax_asym(P->p.bits_lo), mh = resq_qmax_asym(P->p.bits_hi);
  for (int64_t n = 0; n < P->N; n++) {
    for (int64_t k = 0; k < K; k++) {
      int hi = k >= Klo, c;
      if (f == FILL_RANDOM)
        c = hi ? (int)resq_rng_range(r, -128, 127) : (int)resq_rng_range(r, -8, 7);
      else if (f == FILL_POS)
        c = hi ? 127 : 7;
      else
        c = hi ? -128 : -8;
      P->codes[n * K + k] = (int8_t)c;
    }
    P->wsl[n] = f == FILL_RANDOM ? 0.01f + resq_rng_uniform_f32(r) : 1e-3f;
    P->wsh[n] = f == FILL_RANDOM ? 0.001f + resq_rng_uniform_f32(r) * 0.01f : 1e-3f;
    // zero scales on some rows: 0 * negative gives -0 terms, whose sum the reference starts
    // from t_0 itself (-0 + -0 = -0; a +0 start would give +0)
    if (f == FILL_RANDOM && n % 7 == 3) P->wsl[n] = 0.0f;
    if (f == FILL_RANDOM && n % 5 == 2) P->wsh[n] = 0.0f;
    P->bias[n] = (float)resq_rng_normal(r);
  }
  for (int64_t m = 0; m < P->M; m++)
    for (int64_t g = 0; g < G; g++) {
      uint8_t *lo = P->x.q_lo + m * P->x.ld_lo + g * P->L.lo_bytes_per_group;
      memset(lo, 0, (size_t)P->L.lo_bytes_per_group);
      for (int64_t i = 0; i < P->L.lo_per_group; i++) {
        int c = f == FILL_RANDOM ? (int)resq_rng_range(r, 0, ml) : (f == FILL_MAX_CORR ? 0 : ml);
        lo[i / 2] |= (uint8_t)(c << (4 * (i & 1)));
      }
      for (int64_t i = 0; i < P->p.r; i++)
        P->x.q_hi[m * P->x.ld_hi + g * P->p.r + i] =
            (uint8_t)(f == FILL_RANDOM ? resq_rng_range(r, 0, mh) : (f == FILL_MAX_CORR ? 0 : mh));
      P->x.scale_lo[m * G + g] = f == FILL_RANDOM ? 0.05f + resq_rng_uniform_f32(r) : 1e-3f;
      P->x.scale_hi[m * G + g] = f == FILL_RANDOM ? 0.005f + resq_rng_uniform_f32(r) * 0.05f : 1e-3f;
      P->x.zero_lo[m * G + g] = f == FILL_RANDOM ? (int32_t)resq_rng_range(r, 0, ml) : (f == FILL_MAX_CORR ? ml : 0);
      P->x.zero_hi[m * G + g] = f == FILL_RANDOM ? (int32_t)resq_rng_range(r, 0, mh) : (f == FILL_MAX_CORR ? mh : 0);
    }
}

static bool pack(Prob *P) {
  if (!RC_CHECK(resq_gemm_pack_weight(&P->p, P->N, P->codes, P->p.K, P->wsl, P->wsh, &P->w) == RESQ_OK,
                "ref pack: %s", resq_last_error()))
    return false;
  size_t bytes = 0;
  if (!RC_CHECK(resq_gemm_pack_weight_size__cuda(&P->p, P->N, &bytes) == RESQ_OK, "size: %s", resq_last_error()))
    return false;
  free(P->wbuf);
  P->wbuf = xmalloc(bytes);
  return RC_CHECK(resq_gemm_pack_weight__cuda(&P->p, &P->w, P->wbuf, bytes, &P->wc) == RESQ_OK, "cuda pack: %s",
                  resq_last_error());
}

#define GUARD 64
static const uint16_t CANARY16 = 0xdeadu;
static const uint32_t CANARY32 = 0x7fc0deadu;

struct Variant {
  int tile;    // RESQ_GEMM_TILE_*
  int splits;  // 0: automatic (with workspace, sm_count 132)
  int sm90;
};

// One emulated launch vs the reference outputs (both f16 and f32, guard bands, workspace left 0).
static void check_variant(Prob *P, const Variant &v, bool with_bias, const uint16_t *ref16, const float *ref32,
                          resq_rng *rng, int skip_idle, const char *tag, int outputs = 3 /* bit 0 f16, bit 1 f32 */) {
  const int64_t M = P->M, N = P->N, ldy = N + (with_bias ? 3 : 0);
  const size_t tot = (size_t)(M * ldy) + 2 * GUARD;
  std::vector<uint16_t> b16(tot, CANARY16);
  std::vector<uint32_t> b32(tot, CANARY32);
  const size_t wsb = (size_t)rq_ws_bytes(&P->wc, M);
  std::vector<int32_t> ws(wsb / 4 + 1, 0);
  for (int out32 = 0; out32 < 2; out32++) {
    if (!(outputs >> out32 & 1)) {  // not emulated: the reference itself stands in, guards intact
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
          if (out32) memcpy(&b32[GUARD + m * ldy + n], &ref32[m * N + n], 4);
          else b16[GUARD + m * ldy + n] = ref16[m * N + n];
        }
      continue;
    }
    resq_gemm_cuda_opts opts = {(resq_gemm_tile)v.tile, v.splits, ws.data(), wsb};
    RqGemmPlan plan;
    int cfg = 0;
    void *ybase = out32 ? (void *)(b32.data() + GUARD) : (void *)(b16.data() + GUARD);
    resq_status st = rq_gemm_make_plan(&P->p, &P->L, M, &P->x, &P->wc, with_bias ? P->bias : NULL, ybase, ldy, out32,
                                       &opts, 132, &cfg, &plan);
    if (!RC_CHECK(st == RESQ_OK, "%s: plan: %s", tag, resq_last_error())) return;
    EmuOpts eo = {v.sm90, skip_idle};
    long bad = 0;
    g_emu_bad = 0;
    if (cfg == RqGemmDecode::ID)
      emu_grid<RqGemmDecode>(plan, eo, (size_t)(P->wc.Np * P->wc.kblocks * 128), rng, &bad);
    else
      emu_grid<RqGemmPrefill>(plan, eo, (size_t)(P->wc.Np * P->wc.kblocks * 128), rng, &bad);
    RC_CHECK(bad == 0 && g_emu_bad == 0, "%s: emulator reported %ld bad accesses, %d bad ldmatrix/mma", tag, bad,
             g_emu_bad);
    long nz = 0;
    for (size_t i = 0; i < ws.size(); i++) nz += ws[i] != 0;
    RC_CHECK(nz == 0, "%s: %ld workspace words not cleared after the call", tag, nz);
    if (v.tile != RESQ_GEMM_TILE_AUTO)
      RC_CHECK(cfg == v.tile, "%s: plan chose tile %d, asked %d", tag, cfg, v.tile);
    if (v.splits > 1)
      RC_CHECK(plan.splits == (v.splits < plan.ktiles ? v.splits : plan.ktiles), "%s: %d splits planned, %d asked",
               tag, plan.splits, v.splits);
  }
  long bad16 = 0, bad32 = 0, canary = 0;
  for (size_t i = 0; i < tot; i++) {
    int64_t j = (int64_t)i - GUARD;
    bool inside = j >= 0 && j < M * ldy && (j % ldy) < N;
    if (inside) {
      int64_t m = j / ldy, n = j % ldy;
      if (b16[i] != ref16[m * N + n]) {
        if (bad16 < 3)
          printf("  %s: y16[%lld][%lld] = 0x%04x, ref 0x%04x\n", tag, (long long)m, (long long)n, b16[i], ref16[m * N + n]);
        bad16++;
      }
      if (memcmp(&b32[i], &ref32[m * N + n], 4)) {
        float g;
        memcpy(&g, &b32[i], 4);
        if (bad32 < 3)
          printf("  %s: y32[%lld][%lld] = %a, ref %a\n", tag, (long long)m, (long long)n, (double)g,
                 (double)ref32[m * N + n]);
        bad32++;
      }
    } else {
      canary += b16[i] != CANARY16 || b32[i] != CANARY32;
    }
  }
  RC_CHECK(bad16 == 0 && bad32 == 0, "%s: %ld f16 and %ld f32 outputs differ from the reference", tag, bad16, bad32);
  RC_CHECK(canary == 0, "%s: %ld guard/gap elements overwritten", tag, canary);
}

static const Variant k_all_variants[] = {
    {RESQ_GEMM_TILE_DECODE, 1, 0},  {RESQ_GEMM_TILE_DECODE, 1, 1},  {RESQ_GEMM_TILE_DECODE, 2, 0},
    {RESQ_GEMM_TILE_DECODE, 3, 1},  {RESQ_GEMM_TILE_DECODE, 0, 0},  {RESQ_GEMM_TILE_PREFILL, 1, 0},
    {RESQ_GEMM_TILE_PREFILL, 1, 1}, {RESQ_GEMM_TILE_AUTO, 0, 1},
};

static void check_problem(Prob *P, resq_rng *r, const Variant *vs, size_t nv, int skip_idle,
                          const int *outputs = NULL) {
  const int64_t M = P->M, N = P->N;
  std::vector<uint16_t> r16((size_t)(M * N) + 1);
  std::vector<float> r32((size_t)(M * N) + 1);
  for (int with_bias = 0; with_bias < 2; with_bias++) {
    const float *bias = with_bias ? P->bias : NULL;
    if (!RC_CHECK(resq_gemm_q4q8_f16__ref(&P->p, M, &P->x, &P->w, bias, r16.data(), N) == RESQ_OK &&
                      resq_gemm_q4q8_f32__ref(&P->p, M, &P->x, &P->w, bias, r32.data(), N) == RESQ_OK,
                  "ref: %s", resq_last_error()))
      return;
    for (size_t i = 0; i < nv; i++) {
      // bias on every other variant (both paths of every variant would double the run time)
      if ((int)(i % 2) != with_bias && nv > 1) continue;
      char tag[128];
      snprintf(tag, sizeof tag, "%s splits=%d %s%s", vs[i].tile == 1 ? "decode" : vs[i].tile == 2 ? "prefill" : "auto",
               vs[i].splits, vs[i].sm90 ? "sm90" : "sm80", with_bias ? " bias" : "");
      check_variant(P, vs[i], with_bias, r16.data(), r32.data(), r, skip_idle, tag, outputs ? outputs[i] : 3);
    }
  }
}

// ====================================== cases ==================================================

static void case_emulators(void) {
  if (!rc_case("ptx_fragment_emulators")) return;
  // Each A/B/C element of the ISA formulas is owned by exactly one (lane, element) pair.
  int cA64[16][64] = {{0}}, cB64[64][8] = {{0}}, cA32[16][32] = {{0}}, cB32[32][8] = {{0}}, cC[16][8] = {{0}};
  for (int lane = 0; lane < 32; lane++) {
    int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 32; i++)
      cA64[(i < 8 || (16 <= i && i < 24)) ? g : g + 8][i < 16 ? t * 8 + (i & 7) : t * 8 + (i & 7) + 32]++;
    for (int i = 0; i < 16; i++) cB64[i < 8 ? t * 8 + (i & 7) : t * 8 + (i & 7) + 32][g]++;
    for (int i = 0; i < 16; i++)
      cA32[(i < 4 || (8 <= i && i < 12)) ? g : g + 8][i < 8 ? t * 4 + (i & 3) : t * 4 + (i & 3) + 16]++;
    for (int i = 0; i < 8; i++) cB32[i < 4 ? t * 4 + (i & 3) : t * 4 + (i & 3) + 16][g]++;
    for (int i = 0; i < 4; i++) cC[i < 2 ? g : g + 8][t * 2 + (i & 1)]++;
  }
  long bad = 0;
  for (int a = 0; a < 16; a++)
    for (int b = 0; b < 64; b++) bad += cA64[a][b] != 1 || (b < 32 && cA32[a][b] != 1) || (b < 8 && cC[a][b] != 1);
  for (int a = 0; a < 64; a++)
    for (int b = 0; b < 8; b++) bad += cB64[a][b] != 1 || (a < 32 && cB32[a][b] != 1);
  RC_CHECK(bad == 0, "%ld fragment elements not owned exactly once", bad);

  // ldmatrix of a row-major 16 x 32-byte A tile at rows 0..15 (unswizzled, CH = 2 chunks per row)
  // gives exactly the m16n8k32 .u8 A fragment: register j of lane (g, t) = row g + 8(j&1), bytes
  // 16(j>>1) + 4t .. +3 (the ISA formula above), so the u8 MMA sees A[row][k] = byte k of row.
  uint8_t tileA[16 * 32];
  for (int i = 0; i < 16 * 32; i++) tileA[i] = (uint8_t)(i * 7 + 3);
  uint32_t addr[32], a[32][4];
  for (int l = 0; l < 32; l++) {
    int q = l >> 3, rr = l & 7;
    addr[l] = (uint32_t)((rr + 8 * (q & 1)) * 32 + 16 * (q >> 1));
  }
  emu_ldsm_x4(tileA, sizeof tileA, addr, a);
  long badl = 0;
  for (int l = 0; l < 32; l++)
    for (int i = 0; i < 16; i++) {
      int g = l >> 2, t = l % 4;
      int row = (i < 4 || (8 <= i && i < 12)) ? g : g + 8, col = i < 8 ? t * 4 + (i & 3) : t * 4 + (i & 3) + 16;
      badl += u8_of(a[l][i / 4], i % 4) != tileA[row * 32 + col];
    }
  RC_CHECK(badl == 0 && g_emu_bad == 0, "ldmatrix -> m16n8k32 A fragment: %ld elements wrong", badl);
}

static void case_layout_props(void) {
  if (!rc_case("swizzle_chunks_raster_masks")) return;
  // swizzle: a bijection within the tile; 8 rows of one ldmatrix matrix at the same logical chunk
  // and 8 consecutive chunks of a cp.async wave hit 8 distinct 16-byte bank groups.
  long bad = 0;
  for (int CH = 4; CH <= 8; CH += 4) {
    const int rows = 128;
    std::vector<int> seen(rows * CH, 0);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < CH; c++) {
        uint32_t o = rq_swz(r, c, CH);
        if (o % 16 || o / 16 >= (uint32_t)(rows * CH) || o / (CH * 16) != (uint32_t)r) bad++;
        else seen[o / 16]++;
      }
    for (int i = 0; i < rows * CH; i++) bad += seen[i] != 1;
    for (int r0 = 0; r0 < rows; r0 += 8)
      for (int c = 0; c < CH; c++) {
        int banks = 0;
        for (int rr = 0; rr < 8; rr++) banks |= 1 << ((rq_swz(r0 + rr, c, CH) / 16) % 8);
        bad += banks != 0xff;
      }
    for (int idx0 = 0; idx0 < rows * CH; idx0 += 8) {
      int banks = 0;
      for (int k = 0; k < 8; k++) banks |= 1 << ((rq_swz((idx0 + k) / CH, (idx0 + k) % CH, CH) / 16) % 8);
      bad += banks != 0xff;
    }
  }
  RC_CHECK(bad == 0, "swizzle: %ld violations (bijection / conflict-free ldmatrix / conflict-free stores)", bad);

  // ldmatrix lane addresses of one warp's k-step cover exactly the rows x 2 chunks it needs
  bad = 0;
  for (int CH = 4; CH <= 8; CH += 4)
    for (int ks = 0; ks < CH / 2; ks++) {
      std::vector<int> seenA(16 * CH, 0), seenB(16 * CH, 0);
      for (int l = 0; l < 32; l++) {
        seenA[rq_ldsm_a_addr(l, 0, ks, CH) / 16]++;
        seenB[rq_ldsm_b_addr(l, 0, ks, CH) / 16]++;
      }
      for (int r = 0; r < 16; r++)
        for (int c = 0; c < CH; c++) {
          int want = (c / 2 == ks) ? 1 : 0;
          bad += seenA[rq_swz(r, c, CH) / 16] != want || seenB[rq_swz(r, c, CH) / 16] != want;
        }
    }
  RC_CHECK(bad == 0, "ldmatrix addresses: %ld chunks not read exactly once", bad);

  // raster: a bijection onto the tiles; split ranges partition [0, ktiles)
  bad = 0;
  static const int dims[][2] = {{1, 1}, {1, 7}, {7, 1}, {8, 8}, {9, 5}, {17, 3}, {33, 64}, {100, 2}};
  for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
    int tmn = dims[d][0], tnn = dims[d][1];
    std::vector<int> seen(tmn * tnn, 0);
    for (int pid = 0; pid < tmn * tnn; pid++) {
      int tm, tn;
      rq_tile_of(pid, tmn, tnn, &tm, &tn);
      if (tm < 0 || tm >= tmn || tn < 0 || tn >= tnn) bad++;
      else seen[tm * tnn + tn]++;
    }
    for (int i = 0; i < tmn * tnn; i++) bad += seen[i] != 1;
  }
  for (int kt = 1; kt < 40; kt++)
    for (int sp = 1; sp <= kt; sp++) {
      int next = 0;
      for (int s = 0; s < sp; s++) {
        int a, b;
        rq_split_range(kt, sp, s, &a, &b);
        bad += a != next || b < a || (b == a);
        next = b;
      }
      bad += next != kt;
    }
  RC_CHECK(bad == 0, "raster / split ranges: %ld violations", bad);

  // chunk assignment: each (row, chunk) of the A and B tiles exactly once per stage
  bad = 0;
  for (int cfg = 0; cfg < 2; cfg++) {
    int threads = cfg ? (int)RqGemmShape<RqGemmPrefill>::THREADS : (int)RqGemmShape<RqGemmDecode>::THREADS;
    int CH = cfg ? (int)RqGemmShape<RqGemmPrefill>::CH : (int)RqGemmShape<RqGemmDecode>::CH;
    int rowsA = cfg ? (int)RqGemmPrefill::BM : (int)RqGemmDecode::BM;
    int rowsB = cfg ? (int)RqGemmPrefill::BN : (int)RqGemmDecode::BN;
    int itA = cfg ? (int)RqGemmShape<RqGemmPrefill>::A_ITERS : (int)RqGemmShape<RqGemmDecode>::A_ITERS;
    int itB = cfg ? (int)RqGemmShape<RqGemmPrefill>::B_ITERS : (int)RqGemmShape<RqGemmDecode>::B_ITERS;
    for (int which = 0; which < 2; which++) {
      int rows = which ? rowsB : rowsA, its = which ? itB : itA;
      std::vector<int> seen(rows * CH, 0);
      for (int tid = 0; tid < threads; tid++)
        for (int it = 0; it < its; it++) {
          int row, ch;
          if (rq_chunk_of(tid, it, threads, rows, CH, &row, &ch)) seen[row * CH + ch]++;
        }
      for (int i = 0; i < rows * CH; i++) bad += seen[i] != 1;
    }
  }
  RC_CHECK(bad == 0, "chunk assignment: %ld chunks not loaded exactly once", bad);

  // B masks vs the element ranges of the PTX B fragments
  bad = 0;
  for (int lo = 0; lo < 2; lo++) {
    int E = lo ? 64 : 32;
    for (int a = 0; a <= E; a++)
      for (int b = a; b <= E; b++)
        for (int lane = 0; lane < 32; lane++)
          for (int jj = 0; jj < 2; jj++) {
            uint32_t m = rq_bmask(lo, lane, jj, a, b), want = 0;
            int t = lane % 4;
            if (lo) {
              for (int i = 0; i < 8; i++) {
                int k = t * 8 + i + 32 * jj;  // b_{8jj+i}: row t*8 + (i&7) (+32)
                if (k >= a && k < b) want |= 15u << (4 * i);
              }
            } else {
              for (int i = 0; i < 4; i++) {
                int k = t * 4 + i + 16 * jj;
                if (k >= a && k < b) want |= 255u << (8 * i);
              }
            }
            bad += m != want;
          }
  }
  RC_CHECK(bad == 0, "B fragment masks: %ld wrong", bad);
}

static void case_sm90_unpack(void) {
  if (!rc_case("sm90_unpacked_k64_equals_native")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  long bad = 0;
  for (int trial = 0; trial < 400; trial++) {
    uint32_t a[32][4], b[32][2];
    for (int l = 0; l < 32; l++) {
      for (int j = 0; j < 4; j++)
        a[l][j] = trial < 3 ? (trial == 0 ? 0xffffffffu : trial == 1 ? 0u : 0xf0f0f0f0u) : (uint32_t)resq_rng_u64(&r);
      for (int j = 0; j < 2; j++)
        b[l][j] = trial < 3 ? (trial == 0 ? 0x88888888u : trial == 1 ? 0x77777777u : 0x8f7f08f7u) : (uint32_t)resq_rng_u64(&r);
    }
    int32_t c1[32][4], c2[32][4];
    for (int l = 0; l < 32; l++)
      for (int e = 0; e < 4; e++) c1[l][e] = c2[l][e] = (int32_t)resq_rng_range(&r, -1000000, 1000000);
    emu_mma_k64_u4s4(a, b, c1);
    emu_mma_k64_sm90(a, b, c2);
    bad += memcmp(c1, c2, sizeof c1) != 0;
  }
  // rq_sext4 on every nibble value in every byte position
  for (int v = 0; v < 16; v++)
    for (int pos = 0; pos < 4; pos++) {
      uint32_t s = rq_s4_even((uint32_t)v << (8 * pos)), o = rq_s4_odd((uint32_t)v << (8 * pos + 4));
      int want = v >= 8 ? v - 16 : v;
      bad += s8_of(s, pos) != want || s8_of(o, pos) != want;
      bad += (s & ~(0xffu << (8 * pos))) != 0 || (o & ~(0xffu << (8 * pos))) != 0;
    }
  RC_CHECK(bad == 0 && g_emu_bad == 0, "sm_90 unpack: %ld mismatches", bad);
}

// The segment walk: every element of every part in exactly one mma piece of the right segment, in
// K order; every segment flushed exactly once, in order, after its last element.
static void case_segment_walk(void) {
  if (!rc_case("segment_walk")) return;
  static const int64_t cfg[][3] = {{4096, 4096, 512}, {4096, 4096, 0}, {96, 96, 96}, {1, 1, 0},    {129, 129, 16},
                                   {512, 128, 16},    {256, 64, 8},    {200, 40, 6}, {120, 20, 2}, {48, 12, 12},
                                   {64, 8, 0},        {4096, 128, 16}, {96, 24, 4}};
  long bad = 0;
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    resq_qact_params p = resq_qact_default(cfg[c][0]);
    p.group = cfg[c][1];
    p.r = cfg[c][2];
    resq_qact_layout L;
    if (!RC_CHECK(resq_gemm_check(&p, &L) == RESQ_OK, "split %zu", c)) continue;
    resq_qweight_cuda d;
    memset(&d, 0, sizeof d);
    rq_wlayout(&p, &L, 1, &d);
    RqGemmPlan P = {};
    P.G = (int)L.ngroups;
    P.lpg = (int)L.lo_per_group;
    P.r = (int)p.r;
    P.steps_lo = (int)d.steps_lo;
    P.steps_hi = (int)d.steps_hi;
    P.steps = P.steps_lo + P.steps_hi;
    P.seg_lo = (int)d.seg_lo;
    P.nseg = (int)d.nseg;
    const int64_t Klo = L.ngroups * L.lo_per_group, Khi = L.ngroups * p.r;
    std::vector<int> owner_lo(P.steps_lo * 64, -1), owner_hi(P.steps_hi * 32, -1);
    std::vector<int> flushes;
    int last_seg = -1;
    bool flushed_cur = false;
    for (int s = 0; s < P.steps; s++) {
      auto mma = [&](bool lo, int a, int b, int seg) {
        if (seg < last_seg || (seg == last_seg && flushed_cur)) bad++;  // K order, no reuse
        if (seg != last_seg) flushed_cur = false;
        last_seg = seg;
        if (a < 0 || b > (lo ? 64 : 32) || a >= b) bad++;
        int base = lo ? s * 64 : (s - P.steps_lo) * 32;
        for (int e = a; e < b && e >= 0; e++) {
          std::vector<int> &o = lo ? owner_lo : owner_hi;
          if ((size_t)(base + e) >= o.size() || o[base + e] != -1) bad++;
          else o[base + e] = seg;
        }
      };
      auto flush = [&](int seg) {
        if (seg != last_seg) bad++;
        flushes.push_back(seg);
        flushed_cur = true;
      };
      rq_step_segments(P, s, mma, flush);
    }
    for (int64_t k = 0; k < (int64_t)owner_lo.size(); k++) {
      int want = k < Klo ? (int)(k / L.lo_per_group) : (int)L.ngroups - 1;  // padding: last group
      bad += owner_lo[k] != want;
    }
    for (int64_t k = 0; k < (int64_t)owner_hi.size(); k++) {
      int want = P.seg_lo + (k < Khi ? (int)(k / p.r) : (int)L.ngroups - 1);
      bad += owner_hi[k] != want;
    }
    bad += (int)flushes.size() != P.nseg;
    for (size_t i = 0; i < flushes.size(); i++) bad += flushes[i] != (int)i;
  }
  RC_CHECK(bad == 0, "segment walk: %ld violations", bad);
}

static void case_pack(void) {
  if (!rc_case("pack_unpack_roundtrip_and_refusals")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][4] = {{64, 64, 8, 1},   {64, 64, 0, 31},    {64, 64, 64, 33},    {9, 9, 2, 7},
                                   {1, 1, 0, 1},     {4096, 128, 16, 45}, {4096, 4096, 512, 130}, {37, 37, 4, 100},
                                   {512, 64, 6, 3},  {129, 129, 16, 64}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    Prob P;
    if (!RC_CHECK(prob_alloc(&P, 1, cfg[c][3], cfg[c][0], cfg[c][1], cfg[c][2], 4, 8, 0, 0), "split")) continue;
    rc_note("N=%lld K=%lld group=%lld r=%lld", (long long)cfg[c][3], (long long)cfg[c][0], (long long)cfg[c][1],
            (long long)cfg[c][2]);
    fill(&P, &r, FILL_RANDOM);
    if (!pack(&P)) {
      prob_free(&P);
      continue;
    }
    const int64_t N = P.N, G = P.L.ngroups;
    resq_qweight u = {N,
                      (uint8_t *)xmalloc((size_t)(N * P.L.lo_bytes)),
                      P.L.lo_bytes,
                      (int8_t *)xmalloc((size_t)(N * P.L.hi_bytes)),
                      P.L.hi_bytes,
                      (float *)xmalloc((size_t)N * 4),
                      (float *)xmalloc((size_t)N * 4),
                      (int32_t *)xmalloc((size_t)(N * G) * 4),
                      (int32_t *)xmalloc((size_t)(N * G) * 4)};
    // a byte copy of the block is a valid weight
    void *copy = xmalloc(P.wc.bytes);
    memcpy(copy, P.wc.data, P.wc.bytes);
    resq_qweight_cuda wc2 = P.wc;
    wc2.data = copy;
    RC_CHECK(resq_gemm_unpack_weight__cuda(&wc2, &u) == RESQ_OK, "unpack: %s", resq_last_error());
    rc_equal_bytes(u.q_lo, P.w.q_lo, (size_t)(N * P.L.lo_bytes), "q_lo");
    rc_equal_bytes(u.q_hi, P.w.q_hi, (size_t)(N * P.L.hi_bytes), "q_hi");
    if (P.L.lo_per_group > 0) {
      rc_equal_bytes(u.scale_lo, P.w.scale_lo, (size_t)N * 4, "scale_lo");
      rc_equal_i32(u.sum_lo, P.w.sum_lo, (size_t)(N * G), "sum_lo");
    }
    if (P.p.r > 0) {
      rc_equal_bytes(u.scale_hi, P.w.scale_hi, (size_t)N * 4, "scale_hi");
      rc_equal_i32(u.sum_hi, P.w.sum_hi, (size_t)(N * G), "sum_hi");
    }
    // the layout itself: stream byte k of row n at rq_w_offset, padding and rows >= N zero
    const uint8_t *b = (const uint8_t *)P.wc.data;
    long badlay = 0;
    for (int64_t n = 0; n < P.wc.Np; n++)
      for (int64_t k = 0; k < P.wc.kblocks * 128; k++) {
        int want = 0;
        if (n < N && k < P.L.lo_bytes) want = P.w.q_lo[n * P.w.ld_lo + k];
        if (n < N && k >= P.wc.steps_lo * 32 && k - P.wc.steps_lo * 32 < P.L.hi_bytes)
          want = (uint8_t)P.w.q_hi[n * P.w.ld_hi + k - P.wc.steps_lo * 32];
        badlay += b[rq_w_offset(n, k, P.wc.kblocks)] != want;
      }
    RC_CHECK(badlay == 0, "packed layout: %ld bytes differ from the canonical codes / zero padding", badlay);

    // refusals: nothing written
    size_t bytes = P.wc.bytes;
    std::vector<uint8_t> canary(bytes + 64, 0x5c);
    uint8_t *cb = canary.data() + (16 - (uintptr_t)canary.data() % 16) % 16;
    resq_qweight_cuda dd;
    memset(&dd, 0x77, sizeof dd);
    resq_qweight_cuda dd0 = dd;
    RC_CHECK(resq_gemm_pack_weight__cuda(&P.p, &P.w, cb, bytes - 1, &dd) == RESQ_ERR_INVALID_ARG, "small buffer");
    RC_CHECK(resq_gemm_pack_weight__cuda(&P.p, &P.w, cb + 1, bytes, &dd) == RESQ_ERR_INVALID_ARG, "unaligned buffer");
    if (P.L.lo_per_group > 0) {
      P.w.sum_lo[N - 1] += 1;
      RC_CHECK(resq_gemm_pack_weight__cuda(&P.p, &P.w, cb, bytes, &dd) == RESQ_ERR_INVALID_ARG, "bad sum");
      P.w.sum_lo[N - 1] -= 1;
      float keep = P.w.scale_lo[0];
      P.w.scale_lo[0] = NAN;
      RC_CHECK(resq_gemm_pack_weight__cuda(&P.p, &P.w, cb, bytes, &dd) == RESQ_ERR_NONFINITE, "NaN scale");
      P.w.scale_lo[0] = keep;
      if (P.L.ngroups == 1 && P.L.lo_per_group % 2) {
        P.w.q_lo[(N - 1) * P.w.ld_lo + P.L.lo_bytes - 1] |= 0x30;
        RC_CHECK(resq_gemm_pack_weight__cuda(&P.p, &P.w, cb, bytes, &dd) == RESQ_ERR_INVALID_ARG, "pad nibble");
        P.w.q_lo[(N - 1) * P.w.ld_lo + P.L.lo_bytes - 1] &= 0x0f;
      }
    }
    long touched = 0;
    for (size_t i = 0; i < canary.size(); i++) touched += canary[i] != 0x5c;
    RC_CHECK(touched == 0 && memcmp(&dd, &dd0, sizeof dd) == 0, "a refused pack wrote %ld bytes or the descriptor",
             touched);
    free(copy);
    free(u.q_lo), free(u.q_hi), free(u.scale_lo), free(u.scale_hi), free(u.sum_lo), free(u.sum_hi);
    prob_free(&P);
  }
}

static void run_shapes(const int64_t (*cfg)[10], size_t n, resq_rng *r) {
  for (size_t c = 0; c < n; c++) {
    const int64_t *k = cfg[c];
    Prob P;
    if (!RC_CHECK(prob_alloc(&P, k[0], k[1], k[2], k[3], k[4], (int)k[5], (int)k[6], k[7], (int)k[8]),
                  "split %zu: %s", c, resq_last_error()))
      continue;
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld bits=%lld/%lld ld+%lld off%lld", (long long)k[0], (long long)k[1],
            (long long)k[2], (long long)k[3], (long long)k[4], (long long)k[5], (long long)k[6], (long long)k[7],
            (long long)k[8]);
    fill(&P, r, FILL_RANDOM);
    if (pack(&P)) {
      if (k[9])
        check_problem(&P, r, k_all_variants, sizeof k_all_variants / sizeof k_all_variants[0], 0);
      else {
        static const Variant few[] = {{RESQ_GEMM_TILE_DECODE, 3, 1}, {RESQ_GEMM_TILE_PREFILL, 1, 0}};
        check_problem(&P, r, few, 2, 1);
      }
    }
    prob_free(&P);
  }
}

// M, N, K, group, r, bits_lo, bits_hi, ld_extra, offset, all variants
static const int64_t k_per_token[][10] = {
    {1, 64, 256, 256, 32, 4, 8, 0, 0, 1},      {2, 130, 1000, 1000, 125, 4, 8, 0, 0, 1},
    {16, 64, 4096, 4096, 512, 4, 8, 0, 0, 1},  {17, 100, 129, 129, 16, 4, 8, 0, 0, 1},
    {33, 257, 64, 64, 8, 4, 8, 0, 0, 1},       {130, 129, 512, 512, 64, 4, 8, 0, 0, 1},
    {5, 7, 1, 1, 0, 4, 8, 0, 0, 1},            {3, 9, 2, 2, 2, 4, 8, 0, 0, 1},
    {9, 41, 100, 100, 13, 3, 7, 0, 0, 1},      {12, 64, 256, 256, 32, 2, 5, 0, 0, 1},
    {7, 65, 96, 96, 96, 4, 8, 0, 0, 1},        {1, 1, 64, 64, 8, 1, 1, 0, 0, 1},
    {3, 20, 300, 300, 37, 4, 8, 3, 1, 1},      {6, 70, 512, 512, 64, 4, 8, 4, 4, 1},
    {6, 70, 512, 512, 64, 4, 8, 8, 8, 1},      {6, 70, 512, 512, 64, 4, 8, 2, 2, 1},
    {200, 300, 384, 384, 48, 4, 8, 16, 0, 0},  {257, 70, 1024, 1024, 128, 4, 8, 0, 0, 0},
};
static const int64_t k_int4[][10] = {
    {7, 70, 1376, 1376, 0, 4, 8, 0, 0, 1},
    {1, 33, 4096, 4096, 0, 4, 8, 0, 0, 1},
    {130, 260, 512, 512, 0, 4, 8, 0, 0, 0},
    {2, 16, 11008, 11008, 0, 4, 8, 0, 0, 0},
};
static const int64_t k_grouped[][10] = {
    {5, 64, 512, 128, 16, 4, 8, 0, 0, 1},   {3, 70, 256, 64, 8, 4, 8, 0, 0, 1},  {20, 33, 200, 40, 6, 4, 8, 0, 0, 1},
    {4, 17, 120, 20, 2, 4, 8, 0, 0, 1},     {2, 8, 64, 8, 0, 4, 8, 0, 0, 1},     {2, 8, 48, 12, 12, 4, 8, 0, 0, 1},
    {3, 21, 96, 24, 4, 4, 8, 1, 1, 1},      {130, 200, 512, 128, 16, 4, 8, 0, 0, 0},
    {16, 64, 4096, 128, 16, 4, 8, 0, 0, 0},
};

static void case_per_token(void) {
  if (!rc_case("emulated_per_token_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  run_shapes(k_per_token, sizeof k_per_token / sizeof k_per_token[0], &r);
}
static void case_int4(void) {
  if (!rc_case("emulated_pure_int4_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  run_shapes(k_int4, sizeof k_int4 / sizeof k_int4[0], &r);
}
static void case_grouped(void) {
  if (!rc_case("emulated_grouped_oproj_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  run_shapes(k_grouped, sizeof k_grouped / sizeof k_grouped[0], &r);
}

// Activations quantized by the reference from LLM-like rows with outlier channels.
static void case_llm_like(void) {
  if (!rc_case("emulated_llm_like_operands")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][5] = {{3, 96, 4096, 4096, 512}, {16, 40, 14336, 14336, 0}, {16, 64, 4096, 128, 16}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    const int64_t M = cfg[c][0], N = cfg[c][1], K = cfg[c][2];
    Prob P;
    if (!prob_alloc(&P, M, N, K, cfg[c][3], cfg[c][4], 4, 8, 0, 0)) continue;
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld", (long long)M, (long long)N, (long long)K, (long long)cfg[c][3],
            (long long)cfg[c][4]);
    fill(&P, &r, FILL_RANDOM);
    std::vector<float> x((size_t)(M * K));
    for (int64_t i = 0; i < M * K; i++) x[i] = resq_round_f16((float)resq_rng_normal(&r));
    for (int j = 0; j < 6; j++) {
      int64_t ch = (int64_t)resq_rng_below(&r, (uint64_t)K);
      for (int64_t m = 0; m < M; m++) x[m * K + ch] = resq_round_f16(x[m * K + ch] * 150.0f);
    }
    RC_CHECK(resq_quant_act_f32_q4q8__ref(&P.p, M, x.data(), K, &P.x) == RESQ_OK, "quantize: %s", resq_last_error());
    static const Variant vs[] = {{RESQ_GEMM_TILE_DECODE, 0, 1}, {RESQ_GEMM_TILE_DECODE, 1, 0}};
    if (pack(&P)) check_problem(&P, &r, vs, 2, 1);
    prob_free(&P);
  }
}

// int32 extremes at the contract's K limits: |acc_lo| = 120*K_lo with K_lo = 2^23, |acc_hi| =
// 32640*K_hi with K_hi = 32768 (both near 2^30), and the zero-point correction as large.
static void case_extremes(void) {
  if (!rc_case("emulated_int32_extremes_at_k_limits")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t Klo = RESQ_GEMM_MAX_KLO, Khi = RESQ_GEMM_MAX_KHI;
  // (each emulation at K_lo = 2^23 is ~2G multiply-adds: one output type per variant, the f32
  // one carries the exact fp32 value of the large integer sums)
  static const Fill fills[] = {FILL_MIN_ACC, FILL_MAX_CORR, FILL_POS};
  static const int64_t klos[] = {RESQ_GEMM_MAX_KLO, RESQ_GEMM_MAX_KLO, (int64_t)1 << 20};
  for (int f = 0; f < 3; f++) {
    Prob P;
    if (!RC_CHECK(prob_alloc(&P, 2, 8, klos[f] + Khi, klos[f] + Khi, Khi, 4, 8, 0, 0), "split")) continue;
    rc_note("M=2 N=8 K_lo=%lld K_hi=32768 fill %d", (long long)klos[f], (int)fills[f]);
    fill(&P, &r, fills[f]);
    static const Variant vs[] = {{RESQ_GEMM_TILE_DECODE, 1, 0}, {RESQ_GEMM_TILE_DECODE, 4, 1}};
    static const int outs[] = {2, 1};
    if (pack(&P)) check_problem(&P, &r, vs, 2, 1, outs);
    prob_free(&P);
  }
  (void)Klo;
  // prefill tile at the hi limit (K_lo 2^18 keeps the emulation short)
  Prob P;
  if (RC_CHECK(prob_alloc(&P, 3, 5, (1 << 18) + Khi, (1 << 18) + Khi, Khi, 4, 8, 0, 0), "split")) {
    rc_note("M=3 N=5 K_lo=2^18 K_hi=32768 prefill");
    fill(&P, &r, FILL_MIN_ACC);
    static const Variant vs[] = {{RESQ_GEMM_TILE_PREFILL, 1, 1}};
    if (pack(&P)) check_problem(&P, &r, vs, 1, 1);
    prob_free(&P);
  }
}

// Argument checks of the public GEMM (they run before any CUDA call) and of the plan.
static void case_args(void) {
  if (!rc_case("argument_checks")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  Prob P;
  if (!prob_alloc(&P, 4, 20, 256, 256, 32, 4, 8, 0, 0)) return;
  fill(&P, &r, FILL_RANDOM);
  if (!pack(&P)) return;
  uint16_t y[4 * 20];
  resq_qact x = P.x;
  resq_qact_params p = P.p;
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, -1, &x, &P.wc, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "M < 0");
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, NULL, &P.wc, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "x NULL");
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, NULL, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "w NULL");
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, &P.wc, NULL, NULL, 20, NULL) == RESQ_ERR_INVALID_ARG, "y NULL");
  RC_CHECK(resq_gemm_q4q8_f32__cuda(&p, 4, &x, &P.wc, NULL, (float *)y, 19, NULL) == RESQ_ERR_INVALID_ARG, "ldy");
  x.q_lo = NULL;
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, &P.wc, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "q_lo NULL");
  x = P.x;
  x.zero_hi = NULL;
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, &P.wc, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "zero_hi NULL");
  x = P.x;
  x.ld_lo = P.L.lo_bytes - 1;
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, &P.wc, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "ld_lo");
  x = P.x;
  p.r = 16;
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, &P.wc, NULL, y, 20, NULL) == RESQ_ERR_SHAPE, "split mismatch");
  p = P.p;
  p.bits_lo = 5;  // a split the GEMM refuses: the reference's status
  resq_status want = resq_gemm_q4q8_f16__ref(&p, 4, &P.x, &P.w, NULL, y, 20);
  RC_CHECK(want != RESQ_OK && resq_gemm_q4q8_f16__cuda(&p, 4, &x, &P.wc, NULL, y, 20, NULL) == want, "bad split");
  p = P.p;
  resq_qweight_cuda bad = P.wc;
  bad.magic = 0;
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, &bad, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "not packed");
  bad = P.wc;
  bad.data = (char *)bad.data + 8;
  RC_CHECK(resq_gemm_q4q8_f16__cuda(&p, 4, &x, &bad, NULL, y, 20, NULL) == RESQ_ERR_INVALID_ARG, "misaligned weight");
  // plan-level option checks (after the device query in the public function)
  RqGemmPlan plan;
  int cfg;
  int32_t ws[4096];
  resq_gemm_cuda_opts o1 = {RESQ_GEMM_TILE_DECODE, 2, NULL, 0};
  RC_CHECK(rq_gemm_make_plan(&p, &P.L, 4, &x, &P.wc, NULL, y, 20, 0, &o1, 132, &cfg, &plan) == RESQ_ERR_INVALID_ARG,
           "split-K without workspace");
  resq_gemm_cuda_opts o2 = {RESQ_GEMM_TILE_PREFILL, 2, ws, sizeof ws};
  RC_CHECK(rq_gemm_make_plan(&p, &P.L, 4, &x, &P.wc, NULL, y, 20, 0, &o2, 132, &cfg, &plan) == RESQ_ERR_INVALID_ARG,
           "split-K with the prefill tile");
  resq_gemm_cuda_opts o3 = {(resq_gemm_tile)7, 1, NULL, 0};
  RC_CHECK(rq_gemm_make_plan(&p, &P.L, 4, &x, &P.wc, NULL, y, 20, 0, &o3, 132, &cfg, &plan) == RESQ_ERR_INVALID_ARG,
           "unknown tile");
  resq_gemm_cuda_opts o4 = {RESQ_GEMM_TILE_DECODE, -1, NULL, 0};
  RC_CHECK(rq_gemm_make_plan(&p, &P.L, 4, &x, &P.wc, NULL, y, 20, 0, &o4, 132, &cfg, &plan) == RESQ_ERR_INVALID_ARG,
           "negative splits");
  resq_gemm_cuda_opts o6 = {RESQ_GEMM_TILE_DECODE, 2, (char *)ws + 4, sizeof ws - 4};
  RC_CHECK(rq_gemm_make_plan(&p, &P.L, 4, &x, &P.wc, NULL, y, 20, 0, &o6, 132, &cfg, &plan) == RESQ_ERR_INVALID_ARG,
           "misaligned workspace");
  RC_CHECK(resq_gemm_workspace_size__cuda(&P.wc, 4) <= sizeof ws, "workspace size %zu",
           resq_gemm_workspace_size__cuda(&P.wc, 4));
  // automatic choices: decode + split-K for a small grid with a workspace, prefill for a large M
  resq_gemm_cuda_opts o5 = {RESQ_GEMM_TILE_AUTO, 0, ws, sizeof ws};
  RC_CHECK(rq_gemm_make_plan(&p, &P.L, 4, &x, &P.wc, NULL, y, 20, 0, &o5, 132, &cfg, &plan) == RESQ_OK &&
               cfg == RqGemmDecode::ID && plan.splits == 1,
           "auto: 256-byte K gives too few k-tiles to split (%d splits)", plan.splits);
  prob_free(&P);
}

int main(int argc, char **argv) {
  rc_init("cuda_gemm_host_test", argc, argv);
  printf("cuda_gemm_host_test: host emulation of the CUDA mixed GEMM (the kernels themselves are only "
         "compiled here; see verify/gemm_q4q8_f16__cuda_test.c for the GPU check)\n");
  case_emulators();
  case_layout_props();
  case_sm90_unpack();
  case_segment_walk();
  case_pack();
  case_per_token();
  case_int4();
  case_grouped();
  case_llm_like();
  case_extremes();
  case_args();
  return rc_finish();
}
