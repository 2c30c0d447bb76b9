// SPDX-License-Identifier: Apache-2.0
// Host emulation of the CUDA Hadamard and quantizer kernels (ctest label cpu;
// runs everywhere, no GPU and no nvcc needed).
//
// The kernels' index math, data movement and arithmetic live in __host__
// __device__ functions (cuda/src/rq_common.cuh, rq_hadamard.cuh, rq_quant.cuh).
// This program compiles those headers with the host compiler and replays the
// kernels thread by thread and lane by lane: every register of every thread is
// an array entry, a __shfl_xor_sync reads the partner thread's old register, a
// shared-memory round writes/reads a buffer at the kernels' swizzled addresses,
// and the epilogues pack codes exactly as the kernels' stores do. The results
// must equal the reference (resq_hadamard_f32__ref, resq_quant_act_*__ref, the
// composition the fused kernels are defined as) BIT FOR BIT, for every
// Hadamard size the CUDA backend supports (all orders, every block length up
// to the documented limit) and for the quantizer's work split on every kind of
// split (per token, per head / KV cache, grouped o_proj, odd parts, 1..4 and
// 1..8 bits, clip < 1).
//
// What this does NOT prove: that nvcc compiles the kernels to this behaviour
// (instruction selection, the FFMA(+-1) contraction, memory ordering); that is
// what the GPU tests (verify/cuda_*_test.c, label gpu) check on a device.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

extern "C" {
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq_check.h"
}

#include "../cuda/src/rq_hadamard.cuh"
#include "../cuda/src/rq_quant.cuh"

static const uint32_t k_masks[RESQ_HADK_NWORDS] = RESQ_HADK_MASK_INIT;

// ---------------------------------------------------------------------------
// 1. the generated sign masks are the reference's hadK matrices
// ---------------------------------------------------------------------------
static void case_masks(void) {
  if (!rc_case("hadk_masks_vs_ref")) return;
  const int *orders;
  int no = resq_hadamard_orders(&orders);
  RC_CHECK(no == 12, "expected 12 hadK orders, got %d", no);
  for (int oi = 0; oi < no; oi++) {
    int K = orders[oi];
    long bad = 0;
    if (!RC_CHECK(RESQ_HADK_OFFSET(K) >= 0, "no mask offset for order %d", K)) continue;
    for (int a = 0; a < K; a++)
      for (int c = 0; c < K; c++)
        bad += rq_had_sign_value(k_masks, K, a, c) != (float)resq_hadamard_k_entry(K, a, c);
    RC_CHECK(bad == 0, "order %d: %ld mask entries differ from resq_hadamard_k_entry", K, bad);
    // padding bits of the last word of every row are 0
    int W = (K + 31) / 32;
    for (int a = 0; a < K; a++)
      if (K % 32) RC_CHECK((k_masks[RESQ_HADK_OFFSET(K) + a * W + W - 1] >> (K % 32)) == 0, "order %d row %d: pad bits", K, a);
  }
}

// ---------------------------------------------------------------------------
// 2. Hadamard: emulation of rq_had_kernel
// ---------------------------------------------------------------------------
struct had_out {
  std::vector<float> y;        // rows x n (plain transform)
  std::vector<uint8_t> q;      // rows x ldq (fused)
  std::vector<float> scale;    // rows
  std::vector<int32_t> zero;   // rows
};

// The shuffle of one register: every thread reads its partner's OLD value.
static void shfl_bf(std::vector<float> &reg, int nthreads, int bit, const std::vector<int> &tcoord) {
  std::vector<float> old = reg;
  for (int tid = 0; tid < nthreads; tid++)
    reg[tid] = rq_bf(old[tid], old[tid ^ (1 << bit)], (tcoord[tid] >> bit) & 1);
}

template <int K, int Q>
static void emulate_had(const rq_had_plan &p, int64_t rows, int64_t n, const float *x, int64_t ldx,
                        const int8_t *signs, int fused, float clip, float maxq, int64_t ldq, had_out *out) {
  constexpr int S = rq_had_split(K), KC = K / S, V = KC * Q, XS = rq_had_xs(K, Q), SA = rq_had_sa(K);
  const int cta = p.cta, T = 1 << p.log_t;
  const int64_t m = (int64_t)1 << p.log_m;
  if (fused) {
    out->q.assign((size_t)(rows * ldq), 0xa5);
    out->scale.assign((size_t)rows, -1.0f);
    out->zero.assign((size_t)rows, -1);
  } else {
    out->y.assign((size_t)(rows * n), -7.0f);
  }
  std::vector<float> smem(p.smem / 4 + 4, 0.0f);
  std::vector<int> rl(cta), sl(cta), tl(cta);
  for (int tid = 0; tid < cta; tid++) rq_had_coords(p, tid, &rl[tid], &sl[tid], &tl[tid]);
  // the mapping must cover every (rloc, s, t) exactly once
  {
    std::vector<int> seen((size_t)cta, 0);
    for (int tid = 0; tid < cta; tid++) seen[(size_t)((rl[tid] * S + sl[tid]) * T + tl[tid])]++;
    for (int i = 0; i < cta; i++)
      if (seen[(size_t)i] != 1) {
        RC_FAIL("K=%d m=%lld: thread coordinates are not a bijection", K, (long long)m);
        return;
      }
  }
  for (int64_t b0 = 0; b0 < rows; b0 += p.rpc) {  // one CTA
    // regs[i][tid]: register i of every thread
    std::vector<std::vector<float>> regs((size_t)V, std::vector<float>((size_t)cta, 0.0f));
    auto row_of = [&](int tid) { return b0 + rl[tid]; };
    auto valid = [&](int tid) { return row_of(tid) < rows; };
    // 1. load + sign flip
    for (int tid = 0; tid < cta; tid++) {
      if (!valid(tid)) continue;
      for (int cc = 0; cc < KC; cc++)
        for (int q = 0; q < Q; q++) {
          int64_t pos = rq_had_pos(p, tl[tid], sl[tid] * KC + cc, 0) + q;
          float v = x[row_of(tid) * ldx + pos];
          if (signs && signs[pos] < 0) v = -v;
          regs[(size_t)(cc * Q + q)][(size_t)tid] = v;
        }
    }
    // 2a. in-thread stages
    for (int tid = 0; tid < cta; tid++) {
      float v[V];
      for (int i = 0; i < V; i++) v[i] = regs[(size_t)i][(size_t)tid];
      rq_had_thread_stages<KC, Q>(v);
      for (int i = 0; i < V; i++) regs[(size_t)i][(size_t)tid] = v[i];
    }
    // 2b. lane stages (shuffles)
    for (int k = 0; k < p.lane_bits; k++)
      for (int i = 0; i < V; i++) shfl_bf(regs[(size_t)i], cta, k, tl);
    // 2c. warp stages: shared-memory transpose rounds, shuffles, transpose back
    if (p.warp_bits > 0) {
      std::vector<int> own(cta), src(cta);
      for (int tid = 0; tid < cta; tid++) {
        int rbase = tid & ~(T - 1);
        own[tid] = rbase + rq_xchg_phys(tl[tid], p.warp_bits);
        src[tid] = rbase + rq_xchg_phys(rq_xchg_src(tl[tid], p.warp_bits), p.warp_bits);
      }
      {  // both address maps are permutations of the CTA's threads
        std::vector<int> a = own, b = src;
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        for (int i = 0; i < cta; i++)
          if (a[i] != i || b[i] != i) {
            RC_FAIL("K=%d m=%lld: exchange addresses are not a permutation", K, (long long)m);
            return;
          }
      }
      for (int r0 = 0; r0 < V; r0 += XS) {
        float *buf = smem.data() + ((r0 / XS) & 1) * XS * cta;
        for (int j = 0; j < XS && r0 + j < V; j++)
          for (int tid = 0; tid < cta; tid++) buf[j * cta + own[tid]] = regs[(size_t)(r0 + j)][(size_t)tid];
        for (int j = 0; j < XS && r0 + j < V; j++) {
          std::vector<float> tv((size_t)cta);
          for (int tid = 0; tid < cta; tid++) tv[(size_t)tid] = buf[j * cta + src[tid]];
          for (int k = 0; k < p.warp_bits; k++) shfl_bf(tv, cta, k, tl);
          for (int tid = 0; tid < cta; tid++) buf[j * cta + src[tid]] = tv[(size_t)tid];
        }
        for (int j = 0; j < XS && r0 + j < V; j++)
          for (int tid = 0; tid < cta; tid++) regs[(size_t)(r0 + j)][(size_t)tid] = buf[j * cta + own[tid]];
      }
    }
    // 3. scale
    float inv = resq_hadamard_scale_f32(n);
    for (int tid = 0; tid < cta; tid++) {
      float v[V];
      for (int i = 0; i < V; i++) v[i] = regs[(size_t)i][(size_t)tid];
      rq_had_scale<V>(v, inv);
      for (int i = 0; i < V; i++) regs[(size_t)i][(size_t)tid] = v[i];
    }
    float *U = smem.data();
    float *tile = smem.data() + (S > 1 ? p.u_floats : 0);
    if (S > 1)
      for (int tid = 0; tid < cta; tid++)
        for (int cc = 0; cc < KC; cc++)
          U[(size_t)rl[tid] * K * m + ((int64_t)(sl[tid] * KC + cc) << p.log_m) + tl[tid]] = regs[(size_t)cc][(size_t)tid];
    auto fill_tile = [&](int a0, int na) {
      for (int e = 0; e < na * K; e++) {
        int slot, ar, c;
        rq_had_sign_entry(K, a0, e, &slot, &ar, &c);
        tile[slot] = rq_had_sign_value(k_masks, K, ar, c);
      }
    };
    // 4. the mix, as a visitor over (thread, output position, value) in the kernel's order
    auto mix = [&](auto &&visit) {
      if constexpr (K == 1) {
        for (int tid = 0; tid < cta; tid++)
          for (int q = 0; q < Q; q++) visit(tid, rq_had_pos(p, tl[tid], 0, q), regs[(size_t)q][(size_t)tid], 1);
        return;
      } else {
      for (int a0 = 0; a0 < K; a0 += SA) {
        int na = K - a0 < SA ? K - a0 : SA;
        fill_tile(a0, na);
        for (int tid = 0; tid < cta; tid++) {
          if constexpr (S == 1) {
            float v[K * Q];
            for (int i = 0; i < K * Q; i++) v[i] = regs[(size_t)i][(size_t)tid];
            for (int a1 = a0; a1 < a0 + na; a1 += 4) {
              float acc[4][Q];
              rq_had_mix4<K, Q>(v, tile + (a1 - a0) * K, acc);
              for (int i = 0; i < 4; i++)
                for (int q = 0; q < Q; q++) visit(tid, rq_had_pos(p, tl[tid], a1 + i, q), acc[i][q], 1);
            }
          } else {
            int it = rq_had_col_iters(na, S);
            for (int i = 0; i < it; i++) {
              int act;
              int a1 = rq_had_col_group(a0, sl[tid], i, S, na, &act);
              float acc[4];
              rq_had_mix4_col<K>(U + (size_t)rl[tid] * K * m + tl[tid], m, tile + (a1 - a0) * K, acc);
              for (int j = 0; j < 4; j++) visit(tid, rq_had_pos(p, tl[tid], a1 + j, 0), acc[j], act);
            }
          }
        }
      }
      }
    };
    if (!fused) {
      std::vector<int> written((size_t)(p.rpc * n), 0);
      mix([&](int tid, int64_t pos, float v, int act) {
        if (!act || !valid(tid)) return;
        out->y[(size_t)(row_of(tid) * n + pos)] = v;
        written[(size_t)(rl[tid] * n + pos)]++;
      });
      for (int r = 0; r < p.rpc && b0 + r < rows; r++)
        for (int64_t j = 0; j < n; j++)
          if (written[(size_t)(r * n + j)] != 1) {
            RC_FAIL("K=%d m=%lld: output %lld of row %d written %d times", K, (long long)m, (long long)j, r,
                    written[(size_t)(r * n + j)]);
            return;
          }
    } else {
      // pass 1: per-thread min/max, then the row reduction (order independent)
      std::vector<float> mn((size_t)cta, 0.0f), mx((size_t)cta, 0.0f);
      mix([&](int tid, int64_t, float v, int act) {
        if (!act) return;
        mn[(size_t)tid] = rq_min(mn[(size_t)tid], v);
        mx[(size_t)tid] = rq_max(mx[(size_t)tid], v);
      });
      const int per_row = 1 << p.row_bits;
      for (int k = 0; k < (p.row_bits < 5 ? p.row_bits : 5); k++) {
        std::vector<float> a = mn, b = mx;
        for (int tid = 0; tid < cta; tid++) {
          mn[(size_t)tid] = rq_min(a[(size_t)tid], a[(size_t)(tid ^ (1 << k))]);
          mx[(size_t)tid] = rq_max(b[(size_t)tid], b[(size_t)(tid ^ (1 << k))]);
        }
      }
      if (p.row_bits > 5) {
        std::vector<float> a = mn, b = mx;
        for (int tid = 0; tid < cta; tid++) {
          int W = per_row / 32, w0 = (tid >> 5) & ~(W - 1);
          float lo = 0.0f, hi = 0.0f;
          for (int w = 0; w < W; w++) lo = rq_min(lo, a[(size_t)((w0 + w) * 32)]), hi = rq_max(hi, b[(size_t)((w0 + w) * 32)]);
          mn[(size_t)tid] = lo, mx[(size_t)tid] = hi;
        }
      }
      std::vector<float> sc((size_t)cta), zz((size_t)cta);
      for (int tid = 0; tid < cta; tid++) {
        rq_qa_params(mn[(size_t)tid], mx[(size_t)tid], clip, maxq, &sc[(size_t)tid], &zz[(size_t)tid]);
        if (valid(tid) && (tid & (per_row - 1)) == 0) {
          out->scale[(size_t)row_of(tid)] = sc[(size_t)tid];
          out->zero[(size_t)row_of(tid)] = (int32_t)zz[(size_t)tid];
        }
      }
      // pass 2: codes, stored as the kernel stores them (nibble pairs)
      std::vector<int> code((size_t)(p.rpc * n), -1), owner((size_t)(p.rpc * n), -1);
      mix([&](int tid, int64_t pos, float v, int act) {
        if (!act) return;
        code[(size_t)(rl[tid] * n + pos)] = rq_qa_code(v, sc[(size_t)tid], zz[(size_t)tid], maxq);
        owner[(size_t)(rl[tid] * n + pos)] = tid;
      });
      for (int r = 0; r < p.rpc && b0 + r < rows; r++) {
        uint8_t *qr = out->q.data() + (b0 + r) * ldq;
        for (int64_t j = 0; j < n; j += 2) {
          int c0 = code[(size_t)(r * n + j)], c1 = j + 1 < n ? code[(size_t)(r * n + j + 1)] : 0;
          if (c0 < 0 || c1 < 0) {
            RC_FAIL("K=%d m=%lld: code of position %lld not produced", K, (long long)m, (long long)j);
            return;
          }
          // the byte is written by ONE thread holding both nibbles (Q >= 2, or
          // T == 1), or by the even thread t with its partner t^1's code (shuffle)
          int o0 = owner[(size_t)(r * n + j)], o1 = j + 1 < n ? owner[(size_t)(r * n + j + 1)] : o0;
          if (o0 != o1 && !(Q == 1 && T >= 2 && (tl[o0] & 1) == 0 && o1 == (o0 ^ 1))) {
            RC_FAIL("K=%d m=%lld: nibbles of byte %lld come from unpaired threads %d, %d", K, (long long)m,
                    (long long)j / 2, o0, o1);
            return;
          }
          qr[j / 2] = (uint8_t)(c0 | (c1 << 4));
        }
      }
    }
  }
}

typedef void (*had_fn)(const rq_had_plan &, int64_t, int64_t, const float *, int64_t, const int8_t *, int, float,
                       float, int64_t, had_out *);
static had_fn had_dispatch(int K, int Q) {
  switch (K) {
    case 1: return Q == 1 ? emulate_had<1, 1> : Q == 8 ? emulate_had<1, 8> : Q == 32 ? emulate_had<1, 32> : nullptr;
    case 12: return emulate_had<12, 1>;
    case 20: return emulate_had<20, 1>;
    case 28: return Q == 2 ? emulate_had<28, 2> : emulate_had<28, 1>;
    case 36: return emulate_had<36, 1>;
    case 40: return emulate_had<40, 1>;
    case 44: return emulate_had<44, 1>;
    case 52: return emulate_had<52, 1>;
    case 60: return emulate_had<60, 1>;
    case 108: return emulate_had<108, 1>;
    case 140: return emulate_had<140, 1>;
    case 156: return emulate_had<156, 1>;
    case 172: return emulate_had<172, 1>;
    default: return nullptr;
  }
}

// LLM-like f16 values (outliers, exact zeros, subnormals) widened to fp32
static void fill_f16(resq_rng *r, float *x, size_t cnt) {
  for (size_t i = 0; i < cnt; i++) {
    double v = resq_rng_normal(r);
    uint64_t k = resq_rng_below(r, 64);
    if (k == 0) v *= 300.0;
    if (k == 1) v = 0.0;
    if (k == 2) v = ldexp(v, -20);
    x[i] = resq_round_f16((float)v);
  }
}

// One size: plain transform vs resq_hadamard_f32__ref, fused vs ref Hadamard + ref quant.
static void check_had_size(resq_rng *r, int64_t n, int64_t rows, int with_signs, int bits, float clip) {
  int K;
  int64_t m;
  if (!RC_CHECK(resq_hadamard_factor(n, &K, &m) == RESQ_OK, "factor %lld", (long long)n)) return;
  rq_had_plan p = {};
  if (!RC_CHECK(rq_had_make_plan(K, rq_log2i(m), &p) == 0, "n=%lld: no plan", (long long)n)) return;
  had_fn fn = had_dispatch(K, p.Q);
  if (!RC_CHECK(fn != nullptr, "n=%lld: no instantiation for K=%d Q=%d", (long long)n, K, p.Q)) return;
  rc_note("n=%lld (K=%d m=%lld Q=%d S=%d cta=%d rpc=%d) rows=%lld signs=%d bits=%d clip=%g", (long long)n, K,
          (long long)m, p.Q, p.S, p.cta, p.rpc, (long long)rows, with_signs, bits, (double)clip);
  const int64_t ldx = n + 3;
  std::vector<float> x((size_t)(rows * ldx), 0.0f), want((size_t)(rows * n));
  fill_f16(r, x.data(), x.size());
  std::vector<int8_t> s((size_t)n);
  resq_hadamard_random_signs(resq_rng_u64(r), n, s.data());
  const int8_t *sg = with_signs ? s.data() : nullptr;
  std::vector<char> work(resq_hadamard_workspace_size(n));
  RC_CHECK(resq_hadamard_f32__ref(rows, n, x.data(), ldx, want.data(), n, sg, work.data(), work.size()) == RESQ_OK,
           "ref: %s", resq_last_error());
  had_out got;
  fn(p, rows, n, x.data(), ldx, sg, 0, 1.0f, 0.0f, 0, &got);
  rc_equal_f32_bits(got.y.data(), want.data(), want.size(), "emulated Hadamard vs resq_hadamard_f32__ref");
  // fused: Hadamard (fp32) + per-token path-A quantization, r = 0
  resq_qact_params qp = resq_qact_default(n);
  qp.r = 0;
  qp.bits_lo = bits;
  qp.clip = clip;
  resq_qact_layout L;
  resq_qact_check(&qp, &L);
  const int64_t ldq = L.lo_bytes + 1;
  std::vector<uint8_t> wq((size_t)(rows * ldq), 0xa5);
  std::vector<float> ws((size_t)rows, -1.0f);
  std::vector<int32_t> wz((size_t)rows, -1);
  resq_qact o = {wq.data(), ldq, nullptr, 0, ws.data(), wz.data(), nullptr, nullptr};
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&qp, rows, want.data(), n, &o) == RESQ_OK, "ref quant: %s", resq_last_error());
  fn(p, rows, n, x.data(), ldx, sg, 1, clip, (float)resq_qmax_asym(bits), ldq, &got);
  // every byte, the pad byte after each row included (must stay untouched)
  rc_equal_bytes(got.q.data(), wq.data(), wq.size(), "emulated fused codes vs ref Hadamard + ref quant");
  rc_equal_f32_bits(got.scale.data(), ws.data(), ws.size(), "emulated fused scales");
  rc_equal_i32(got.zero.data(), wz.data(), wz.size(), "emulated fused zeros");
}

static void case_had_all_sizes(void) {
  if (!rc_case("hadamard_emulation_all_sizes")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int *orders;
  int no = resq_hadamard_orders(&orders);
  std::vector<int> ks(1, 1);
  for (int i = 0; i < no; i++) ks.push_back(orders[i]);
  int sizes = 0;
  for (int K : ks) {
    int64_t lim = rq_had_max_m(K);
    for (int64_t m = 1; m <= lim; m *= 2) {
      int64_t n = (int64_t)K * m;
      int Kf;
      int64_t mf;
      // upstream's dispatch may factor n differently (e.g. 12*4 = 48 is had12 * 4, but
      // 40*2 is had40, not had20*4): only sizes whose factorization is (K, m)
      if (resq_hadamard_factor(n, &Kf, &mf) != RESQ_OK || Kf != K || mf != m) continue;
      rq_had_plan p;
      // rows: one CTA plus a partial one (rows beyond the end are the kernel's invalid rows)
      rq_had_make_plan(K, rq_log2i(m), &p);
      int64_t rows = p.rpc + 1;
      if (n >= 16384) rows = 2;
      check_had_size(&r, n, rows, (int)(m & 1) ^ (sizes & 1), 4, 1.0f);
      sizes++;
    }
    // one beyond the limit must be refused by the plan
    rq_had_plan p;
    RC_CHECK(rq_had_make_plan(K, rq_log2i(lim) + 1, &p) != 0, "K=%d: m=%lld beyond the limit accepted", K,
             (long long)(lim * 2));
  }
  printf("  %d Hadamard sizes emulated\n", sizes);
  RC_CHECK(sizes >= 100, "only %d sizes", sizes);
}

static void case_had_variants(void) {
  if (!rc_case("hadamard_emulation_model_sizes")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  // model sizes with signs and other bit widths / clip ratios for the fused epilogue
  static const int64_t sizes[] = {4096, 11008, 14336, 3584, 28672, 5120, 13824, 128, 172, 12, 1, 2, 44, 8192};
  for (int64_t n : sizes) {
    check_had_size(&r, n, 3, 1, 4, 1.0f);
    check_had_size(&r, n, 2, 1, 3, 0.9f);
  }
}

// shared memory of every plan fits the smallest opt-in limit of the targets
// (sm_86/sm_89: 101,376 bytes per block, minus the kernels' 256 static bytes)
static void case_had_limits(void) {
  if (!rc_case("hadamard_plan_limits")) return;
  const int *orders;
  int no = resq_hadamard_orders(&orders);
  std::vector<int> ks(1, 1);
  for (int i = 0; i < no; i++) ks.push_back(orders[i]);
  size_t worst = 0;
  for (int K : ks)
    for (int64_t m = 1; m <= rq_had_max_m(K); m *= 2) {
      rq_had_plan p;
      if (!RC_CHECK(rq_had_make_plan(K, rq_log2i(m), &p) == 0, "K=%d m=%lld", K, (long long)m)) continue;
      RC_CHECK(p.cta <= p.maxt, "K=%d m=%lld: %d threads > launch bound %d", K, (long long)m, p.cta, p.maxt);
      RC_CHECK(p.smem + 256 <= 101376, "K=%d m=%lld: %zu bytes of shared memory", K, (long long)m, p.smem);
      RC_CHECK(p.Q * (1 << p.log_t) == m, "K=%d m=%lld: Q*T != m", K, (long long)m);
      RC_CHECK(p.KC * p.Q <= 64, "K=%d m=%lld: %d values per thread", K, (long long)m, p.KC * p.Q);
      worst = std::max(worst, p.smem);
    }
  printf("  largest shared memory per CTA: %zu bytes\n", worst);
  // the documented limits (resq/cuda.h) are what the plans accept
  RC_CHECK(resq_hadamard_factor(172 * 128, nullptr, nullptr) == RESQ_OK && rq_had_max_m(172) == 128, "172 limit");
  RC_CHECK(rq_had_max_m(28) == 1024 && rq_had_max_m(12) == 1024 && rq_had_max_m(60) == 512 && rq_had_max_m(1) == 32768,
           "documented limits changed");
}

// ---------------------------------------------------------------------------
// 3. the activation quantizer kernel (rq_qa_kernel) and dequantization
// ---------------------------------------------------------------------------
// One emulated launch: rows x K values; rms != 0: the fused RMSNorm variant.
static void emulate_qa(const resq_qact_params *pp, int64_t M, const float *x, int64_t ldx, const resq_qact *o,
                       int rms, const float *gamma, float eps) {
  rq_qa_plan p;
  rq_qa_make_plan(pp->K, pp->group, pp->r, pp->bits_lo, pp->bits_hi, pp->clip, &p);
  const int TG = p.tg;
  for (int64_t item = 0; item < M * p.ngroups; item++) {
    int64_t row = item / p.ngroups, g = item - row * p.ngroups;
    const float *xr = x + row * ldx + g * p.group;
    float rinv = 1.0f;
    if (rms) {
      std::vector<double> part((size_t)TG, 0.0);
      for (int t = 0; t < TG; t++)
        for (int64_t j = t; j < p.nch; j += TG) {
          int hi, cnt;
          int64_t e0, col;
          rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
          for (int k = 0; k < cnt; k++) part[(size_t)t] = rq_rms_add(part[(size_t)t], rq_rms_sq(xr[col + k]));
        }
      rinv = rq_rms_rinv(rq_rms_tree_host(part.data(), TG), p.K, eps);
    }
    auto value = [&](int64_t col) {
      float v = xr[col];
      if (rms) {
        v = rq_mul(v, rinv);
        if (gamma) v = rq_mul(v, gamma[g * p.group + col]);
      }
      return v;
    };
    // pass 1 per thread
    std::vector<float> mm((size_t)TG * 4, 0.0f);
    for (int t = 0; t < TG; t++)
      for (int64_t j = t; j < p.nch; j += TG) {
        int hi, cnt;
        int64_t e0, col;
        rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
        for (int k = 0; k < cnt; k++) {
          float v = value(col + k);
          mm[(size_t)t * 4 + 2 * hi] = rq_min(mm[(size_t)t * 4 + 2 * hi], v);
          mm[(size_t)t * 4 + 2 * hi + 1] = rq_max(mm[(size_t)t * 4 + 2 * hi + 1], v);
        }
      }
    // reduction: xor levels over the low 5 bits, then warps (as rq_qa_reduce4)
    for (int k = 0; k < (p.log_tg < 5 ? p.log_tg : 5); k++) {
      std::vector<float> old = mm;
      for (int t = 0; t < TG; t++)
        for (int i = 0; i < 4; i++) {
          float a = old[(size_t)t * 4 + i], b = old[(size_t)(t ^ (1 << k)) * 4 + i];
          mm[(size_t)t * 4 + i] = (i & 1) ? rq_max(a, b) : rq_min(a, b);
        }
    }
    float fin[4] = {0, 0, 0, 0};
    if (p.log_tg > 5) {
      for (int w = 0; w < TG / 32; w++)
        for (int i = 0; i < 4; i++) fin[i] = (i & 1) ? rq_max(fin[i], mm[(size_t)w * 32 * 4 + i]) : rq_min(fin[i], mm[(size_t)w * 32 * 4 + i]);
    } else {
      for (int i = 0; i < 4; i++) fin[i] = mm[(size_t)i];
      for (int t = 1; t < TG; t++)  // every lane holds the same after the butterfly
        for (int i = 0; i < 4; i++)
          if (mm[(size_t)t * 4 + i] != fin[i]) RC_FAIL("lane %d disagrees after the butterfly", t);
    }
    float s_lo = 1, z_lo = 0, s_hi = 1, z_hi = 0;
    if (p.lo > 0) rq_qa_params(fin[0], fin[1], p.clip, p.maxq_lo, &s_lo, &z_lo);
    if (p.r > 0) rq_qa_params(fin[2], fin[3], p.clip, p.maxq_hi, &s_hi, &z_hi);
    if (p.lo > 0) o->scale_lo[item] = s_lo, o->zero_lo[item] = (int32_t)z_lo;
    if (p.r > 0) o->scale_hi[item] = s_hi, o->zero_hi[item] = (int32_t)z_hi;
    // pass 2: per chunk, packed words stored as the fast path (little endian) or bytes
    for (int t = 0; t < TG; t++)
      for (int64_t j = t; j < p.nch; j += TG) {
        int hi, cnt;
        int64_t e0, col;
        rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
        int c[8];
        for (int k = 0; k < 8; k++)
          c[k] = k < cnt ? (hi ? rq_qa_code(value(col + k), s_hi, z_hi, p.maxq_hi) : rq_qa_code(value(col + k), s_lo, z_lo, p.maxq_lo)) : 0;
        if (!hi) {
          uint32_t w = rq_qa_pack_lo(c, cnt);
          uint8_t *d = o->q_lo + row * o->ld_lo + rq_qa_lo_byte(p, g, e0);
          for (int b = 0; b < (cnt + 1) / 2; b++) d[b] = (uint8_t)(w >> (8 * b));
        } else {
          uint32_t w0, w1;
          rq_qa_pack_hi(c, cnt, &w0, &w1);
          uint8_t *d = o->q_hi + row * o->ld_hi + rq_qa_hi_byte(p, g, e0);
          for (int b = 0; b < cnt; b++) d[b] = (uint8_t)((b < 4 ? w0 : w1) >> (8 * (b & 3)));
        }
      }
  }
}

struct qbuf {
  std::vector<uint8_t> lo, hi;
  std::vector<float> slo, shi;
  std::vector<int32_t> zlo, zhi;
  resq_qact q;
  void init(const resq_qact_layout &L, int64_t M) {
    lo.assign((size_t)(M * (L.lo_bytes + 2)) + 1, 0xa5);
    hi.assign((size_t)(M * (L.hi_bytes + 3)) + 1, 0xa5);
    size_t ng = (size_t)(M * L.ngroups) + 1;
    slo.assign(ng, -3.0f), shi.assign(ng, -3.0f), zlo.assign(ng, -3), zhi.assign(ng, -3);
    q = {lo.data(), L.lo_bytes + 2, hi.data(), L.hi_bytes + 3, slo.data(), zlo.data(), shi.data(), zhi.data()};
  }
};

static void compare_q(const qbuf &a, const qbuf &b, const char *tag) {
  char w[160];
  snprintf(w, sizeof w, "%s: q_lo", tag);
  rc_equal_bytes(a.lo.data(), b.lo.data(), a.lo.size(), w);
  snprintf(w, sizeof w, "%s: q_hi", tag);
  rc_equal_bytes(a.hi.data(), b.hi.data(), a.hi.size(), w);
  snprintf(w, sizeof w, "%s: scale_lo", tag);
  rc_equal_f32_bits(a.slo.data(), b.slo.data(), a.slo.size(), w);
  snprintf(w, sizeof w, "%s: scale_hi", tag);
  rc_equal_f32_bits(a.shi.data(), b.shi.data(), a.shi.size(), w);
  snprintf(w, sizeof w, "%s: zeros", tag);
  rc_equal_i32(a.zlo.data(), b.zlo.data(), a.zlo.size(), w);
  rc_equal_i32(a.zhi.data(), b.zhi.data(), a.zhi.size(), w);
}

static void fill_rows(resq_rng *r, float *x, int64_t M, int64_t K, int64_t ld, int kind) {
  for (int64_t m = 0; m < M; m++) {
    int k = kind == 5 ? (int)(m % 5) : kind;
    float c = (float)resq_rng_normal(r);
    for (int64_t j = 0; j < K; j++) {
      double v;
      switch (k) {
        case 0: v = resq_rng_normal(r); break;
        case 1: v = resq_rng_normal(r) * (resq_rng_below(r, 50) == 0 ? 200 : 1); break;
        case 2: v = 0; break;
        case 3: v = c; break;
        default: v = 0.5 * (double)resq_rng_range(r, -15, 15); break;  // ties at x/s = k + 1/2
      }
      if (k == 0 && j % 97 == 3) v = ldexp(v, -20);
      x[m * ld + j] = resq_round_f16((float)v);
    }
  }
}

static void case_quant(void) {
  if (!rc_case("quant_emulation_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* K, group, r, bits_lo, bits_hi, clip*100, M: per token, down_proj, all-8-bit, per head (KV
   * cache), grouped o_proj, odd parts, short rows, other bit widths, clip < 1, groups > 4096 */
  static const int64_t cfg[][7] = {
      {4096, 4096, 512, 4, 8, 100, 3},  {4096, 4096, 0, 4, 8, 100, 2},   {4096, 4096, 4096, 4, 8, 100, 2},
      {14336, 14336, 0, 4, 8, 100, 2},  {28672, 28672, 0, 4, 8, 100, 1}, {1024, 128, 16, 4, 8, 100, 5},
      {4096, 128, 16, 4, 8, 100, 3},    {1024, 64, 8, 4, 8, 100, 2},     {37, 37, 4, 4, 8, 100, 7},
      {9, 9, 2, 4, 8, 100, 5},          {45, 15, 4, 4, 8, 100, 6},       {1, 1, 0, 4, 8, 100, 3},
      {1, 1, 1, 4, 8, 100, 3},          {256, 256, 32, 2, 6, 90, 4},     {100, 100, 7, 3, 5, 75, 4},
      {64, 32, 5, 1, 1, 100, 4},        {8192, 8192, 1024, 4, 8, 95, 2}, {17, 17, 16, 4, 8, 100, 3},
      {40960, 40960, 5120, 4, 8, 100, 1}, {24, 8, 0, 4, 8, 100, 9},
  };
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    resq_qact_params p = resq_qact_default(cfg[c][0]);
    p.group = cfg[c][1], p.r = cfg[c][2], p.bits_lo = (int)cfg[c][3], p.bits_hi = (int)cfg[c][4];
    p.clip = (float)cfg[c][5] / 100.0f;
    const int64_t M = cfg[c][6], K = p.K, ld = K + 3;
    resq_qact_layout L;
    if (!RC_CHECK(resq_qact_check(&p, &L) == RESQ_OK, "params")) continue;
    for (int kind = 0; kind <= 5; kind++) {
      rc_note("K=%lld group=%lld r=%lld bits=%d/%d clip=%g M=%lld kind=%d", (long long)K, (long long)p.group,
              (long long)p.r, p.bits_lo, p.bits_hi, (double)p.clip, (long long)M, kind);
      std::vector<float> x((size_t)(M * ld), 0.0f);
      fill_rows(&r, x.data(), M, K, ld, kind);
      qbuf want, got;
      want.init(L, M), got.init(L, M);
      RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, x.data(), ld, &want.q) == RESQ_OK, "ref: %s", resq_last_error());
      emulate_qa(&p, M, x.data(), ld, &got.q, 0, nullptr, 0.0f);
      compare_q(got, want, "emulated quantizer");
      // dequantization through rq_dq_locate / rq_dq_value vs the reference
      rq_qa_plan pl;
      rq_qa_make_plan(p.K, p.group, p.r, p.bits_lo, p.bits_hi, p.clip, &pl);
      std::vector<float> dw((size_t)(M * K)), dg((size_t)(M * K));
      RC_CHECK(resq_dequant_act_q4q8_f32__ref(&p, M, &want.q, dw.data(), K) == RESQ_OK, "ref dequant");
      for (int64_t row = 0; row < M; row++)
        for (int64_t col = 0; col < K; col++) {
          int64_t g, byte;
          int hi, nib;
          rq_dq_locate(pl, col, &g, &hi, &byte, &nib);
          int code = hi ? want.q.q_hi[row * want.q.ld_hi + byte] : (want.q.q_lo[row * want.q.ld_lo + byte] >> (4 * nib)) & 15;
          dg[(size_t)(row * K + col)] = hi ? rq_dq_value(code, want.q.scale_hi[row * pl.ngroups + g], want.q.zero_hi[row * pl.ngroups + g])
                                           : rq_dq_value(code, want.q.scale_lo[row * pl.ngroups + g], want.q.zero_lo[row * pl.ngroups + g]);
        }
      rc_equal_f32_bits(dg.data(), dw.data(), dw.size(), "emulated dequantization");
    }
  }
}

// fused RMSNorm + quantization: the emulation equals the composition with the
// kernel's summation order, and that order agrees with the reference's
// sequential sum (counted; both compositions are compared)
static void case_rmsnorm_quant(void) {
  if (!rc_case("rmsnorm_quant_emulation")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t Ks[] = {4096, 256, 8192, 5120, 37, 14336, 40960};
  long rows_total = 0, rows_diff = 0;
  for (int64_t K : Ks) {
    const int64_t M = K >= 14336 ? 3 : 24, ld = K + 1;
    const float eps = 1e-5f;
    for (int with_gamma = 0; with_gamma < 2; with_gamma++) {
      rc_note("K=%lld M=%lld gamma=%d", (long long)K, (long long)M, with_gamma);
      std::vector<float> x((size_t)(M * ld), 0.0f), gam((size_t)K), a((size_t)(M * K)), a2((size_t)(M * K));
      fill_rows(&r, x.data(), M, K, ld, 1);
      for (int64_t i = 0; i < M; i++) x[(size_t)(i * ld)] = 0.0f;  // a leading zero
      for (int64_t i = 0; i < K; i++) gam[(size_t)i] = resq_round_f16((float)(1.0 + 0.1 * resq_rng_normal(&r)));
      const float *gp = with_gamma ? gam.data() : nullptr;
      resq_qact_params p = resq_qact_default(K);
      resq_qact_layout L;
      resq_qact_check(&p, &L);
      // (a) the reference composition: resq_rmsnorm_f32__ref (sequential double sum)
      std::vector<float> xc((size_t)(M * K));
      for (int64_t i = 0; i < M; i++) memcpy(&xc[(size_t)(i * K)], &x[(size_t)(i * ld)], sizeof(float) * (size_t)K);
      RC_CHECK(resq_rmsnorm_f32__ref(M, K, xc.data(), gp, eps, a.data()) == RESQ_OK, "ref rmsnorm");
      // (b) the kernel's definition: the same with the tree-ordered sum of rq_quant.cuh
      rq_qa_plan pl;
      rq_qa_make_plan(p.K, p.group, p.r, p.bits_lo, p.bits_hi, p.clip, &pl);
      std::vector<int> differs((size_t)M, 0);
      for (int64_t i = 0; i < M; i++) {
        std::vector<double> part((size_t)pl.tg, 0.0);
        for (int t = 0; t < pl.tg; t++)
          for (int64_t j = t; j < pl.nch; j += pl.tg) {
            int hi, cnt;
            int64_t e0, col;
            rq_qa_chunk(pl, j, &hi, &e0, &cnt, &col);
            for (int k = 0; k < cnt; k++) part[(size_t)t] += (double)x[(size_t)(i * ld + col + k)] * (double)x[(size_t)(i * ld + col + k)];
          }
        double ss = rq_rms_tree_host(part.data(), pl.tg), seq = 0.0;
        for (int64_t j = 0; j < K; j++) seq += (double)xc[(size_t)(i * K + j)] * xc[(size_t)(i * K + j)];
        float rinv = rq_rms_rinv(ss, K, eps);
        for (int64_t j = 0; j < K; j++) {
          float v = xc[(size_t)(i * K + j)] * rinv;
          a2[(size_t)(i * K + j)] = gp ? v * gp[j] : v;
        }
        differs[(size_t)i] = (float)(ss / (double)K) != (float)(seq / (double)K);
        rows_diff += differs[(size_t)i];
        rows_total++;
      }
      qbuf want_ref, want_def, got;
      want_ref.init(L, M), want_def.init(L, M), got.init(L, M);
      RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, a2.data(), K, &want_def.q) == RESQ_OK, "ref quant");
      emulate_qa(&p, M, x.data(), ld, &got.q, 1, gp, eps);
      compare_q(got, want_def, "emulated fused RMSNorm + quant vs its definition");
      // rows whose ms agrees between the two orders must match the reference composition
      RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, a.data(), K, &want_ref.q) == RESQ_OK, "ref quant");
      for (int64_t i = 0; i < M; i++) {
        if (differs[(size_t)i]) continue;
        RC_CHECK(!memcmp(&got.lo[(size_t)(i * got.q.ld_lo)], &want_ref.lo[(size_t)(i * got.q.ld_lo)], (size_t)L.lo_bytes) &&
                     !memcmp(&got.hi[(size_t)(i * got.q.ld_hi)], &want_ref.hi[(size_t)(i * got.q.ld_hi)], (size_t)L.hi_bytes) &&
                     got.slo[(size_t)i] == want_ref.slo[(size_t)i] && got.shi[(size_t)i] == want_ref.shi[(size_t)i],
                 "row %lld: differs from resq_rmsnorm_f32__ref + quant although ms agrees", (long long)i);
      }
    }
  }
  printf("  %ld of %ld rows: ms of the tree order differs from the sequential sum\n", rows_diff, rows_total);
  RC_CHECK(rows_diff * 1000 <= rows_total, "tree and sequential sums disagree in %ld of %ld rows", rows_diff, rows_total);
}

// xor-shuffle reductions of the min/max are exact: random permutations of the
// reduction tree give the reference's (sequential) value bit for bit, zeros included
static void case_minmax_orders(void) {
  if (!rc_case("minmax_any_order")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  for (int trial = 0; trial < 2000; trial++) {
    int n = 1 + (int)resq_rng_below(&r, 300);
    std::vector<float> v((size_t)n);
    for (int i = 0; i < n; i++) {
      uint64_t k = resq_rng_below(&r, 6);
      v[(size_t)i] = k == 0 ? 0.0f : k == 1 ? -0.0f : (float)resq_rng_normal(&r) * (k == 2 ? 1e-30f : 1.0f);
      if (trial % 7 == 0) v[(size_t)i] = -0.0f;  // all negative zeros: the +0 start must survive
    }
    float mn = 0.0f, mx = 0.0f;
    for (int i = 0; i < n; i++) {
      if (v[(size_t)i] < mn) mn = v[(size_t)i];  // the reference's loop
      if (v[(size_t)i] > mx) mx = v[(size_t)i];
    }
    for (int i = n - 1; i > 0; i--) std::swap(v[(size_t)i], v[(size_t)resq_rng_below(&r, (uint64_t)i + 1)]);
    // every lane folds its values into accumulators that start at +0 (as the
    // kernels do); idle lanes keep the +0
    std::vector<float> a(512, 0.0f), b(512, 0.0f);
    for (int i = 0; i < n; i++) {
      size_t lane = (size_t)(i % 512);
      a[lane] = rq_min(a[lane], v[(size_t)i]), b[lane] = rq_max(b[lane], v[(size_t)i]);
    }
    for (int k = 0; k < 9; k++) {
      std::vector<float> oa = a, ob = b;
      for (int t = 0; t < 512; t++) a[(size_t)t] = rq_min(oa[(size_t)t], oa[(size_t)(t ^ (1 << k))]), b[(size_t)t] = rq_max(ob[(size_t)t], ob[(size_t)(t ^ (1 << k))]);
    }
    if (!RC_CHECK(!memcmp(&a[0], &mn, 4) && !memcmp(&b[0], &mx, 4), "trial %d: tree min/max %a/%a vs %a/%a", trial,
                  (double)a[0], (double)b[0], (double)mn, (double)mx))
      break;
  }
}

int main(int argc, char **argv) {
  rc_init("cuda_host_test", argc, argv);
  case_masks();
  case_had_limits();
  case_had_all_sizes();
  case_had_variants();
  case_quant();
  case_rmsnorm_quant();
  case_minmax_orders();
  return rc_finish();
}
