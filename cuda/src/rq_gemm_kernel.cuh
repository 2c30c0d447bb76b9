// SPDX-License-Identifier: Apache-2.0
// The mixed INT4/INT8 GEMM kernel (device side). Everything that decides WHAT is
// loaded, multiplied, masked, folded and stored lives in rq_gemm.cuh and is
// replayed by the host emulation test; this file adds only the PTX wrappers
// (cp.async, ldmatrix, mma.sync, cache policy) and the per-thread driver.
//
// STATUS: COMPILED ONLY (CUDA 13.0, sm_80/86/89/90) on a machine without a GPU;
// this kernel has NEVER RUN. verify/gemm_q4q8_f16__cuda_test.c checks it bit for
// bit against the reference wherever a GPU exists.
//
// One CTA computes a BM x BN output tile over the k-tiles of its split:
//   gmem -> smem: cp.async 16-byte chunks into a STAGES-deep ring; weights with
//     cp.async.cg (+ L2 evict_first for decode, where every weight byte is read
//     once), activations with cp.async of the largest granule their alignment
//     allows (zero-filled past the row end) or plain loads for odd layouts;
//   smem -> registers: ldmatrix.x4 on XOR-swizzled rows (conflict free);
//   tensor cores: m16n8k64 u4.s4 (lo steps) / m16n8k32 u8.s8 (hi steps) into
//     int32 accumulators; on sm_90 a lo step is two m16n8k32 u8.s8 MMAs on
//     registers unpacked in place (rq_u4_even/odd, rq_s4_even/odd);
//   at each segment end the int32 sums are folded into fp32 outputs in K order
//     (no int32 round trip through global memory), or, with split-K, added to an
//     int32 workspace with integer atomics (exact, order independent); the last
//     CTA of a tile (atomic counter) folds the totals, then clears the workspace
//     and the counter for the next call;
//   bias, RNE to f16 (or fp32), direct 4/8-byte stores.
#ifndef RESQ_CUDA_RQ_GEMM_KERNEL_CUH
#define RESQ_CUDA_RQ_GEMM_KERNEL_CUH

#include <cuda_fp16.h>
#include <stdint.h>

#include "rq_gemm.cuh"

__device__ __forceinline__ uint32_t rq_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// cp.async with src-size: `src_bytes` (0..cp-size) bytes are read, the rest of the cp-size
// destination bytes are zero-filled. src must be aligned to cp-size even when src_bytes is 0.
__device__ __forceinline__ void rq_cp16(uint32_t dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void rq_cp16_hint(uint32_t dst, const void *src, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "l"(policy)
               : "memory");
}
__device__ __forceinline__ void rq_cp8(uint32_t dst, const void *src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void rq_cp4(uint32_t dst, const void *src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void rq_cp_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void rq_cp_wait(void) {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ uint64_t rq_evict_first_policy(void) {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
  return p;
}
__device__ __forceinline__ void rq_st_shared_v4(uint32_t dst, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}
__device__ __forceinline__ void rq_ldsm_x4(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// D = A*B + D, m16n8k32, A u8 (row), B s8 (col), int32 accumulators.
__device__ __forceinline__ void rq_mma_u8s8(int32_t c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// D = A*B + D, m16n8k64, A u4 (row), B s4 (col). Native IMMA on sm_80/86/89; on sm_90 (no 4-bit
// tensor cores) two u8.s8 MMAs on the even / odd nibbles (see rq_gemm.cuh).
__device__ __forceinline__ void rq_mma_u4s4(int32_t c[4], const uint32_t a[4], const uint32_t b[2]) {
#if __CUDA_ARCH__ >= 900
  uint32_t ae[4], ao[4], be[2], bo[2];
#pragma unroll
  for (int j = 0; j < 4; j++) {
    ae[j] = rq_u4_even(a[j]);
    ao[j] = rq_u4_odd(a[j]);
  }
#pragma unroll
  for (int j = 0; j < 2; j++) {
    be[j] = rq_s4_even(b[j]);
    bo[j] = rq_s4_odd(b[j]);
  }
  rq_mma_u8s8(c, ae, be);
  rq_mma_u8s8(c, ao, bo);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k64.row.col.s32.u4.s4.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// One activation chunk: src.valid bytes from base + src.off, zero-filled to 16 bytes. The
// granule (chosen on the host from the pointer and stride alignment) is the cp.async size;
// `dummy` is a valid, 16-byte aligned address used when nothing is read.
__device__ __forceinline__ void rq_load_a_chunk(uint32_t dst, const uint8_t *base, const RqASrc &s, int gran,
                                                const void *dummy) {
  if (gran == 16) {
    rq_cp16(dst, s.valid ? (const void *)(base + s.off) : dummy, s.valid);
  } else if (gran == 8) {
#pragma unroll
    for (int p = 0; p < 2; p++) {
      int v = s.valid - 8 * p;
      v = v < 0 ? 0 : (v > 8 ? 8 : v);
      rq_cp8(dst + 8 * p, v ? (const void *)(base + s.off + 8 * p) : dummy, v);
    }
  } else if (gran == 4) {
#pragma unroll
    for (int p = 0; p < 4; p++) {
      int v = s.valid - 4 * p;
      v = v < 0 ? 0 : (v > 4 ? 4 : v);
      rq_cp4(dst + 4 * p, v ? (const void *)(base + s.off + 4 * p) : dummy, v);
    }
  } else {  // unaligned rows: synchronous byte loads (correct, slow; see resq/cuda_gemm.h)
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int b = 0; b < 16; b++)  // unrolled: constant register indices, no local memory
      if (b < s.valid) w[b >> 2] |= (uint32_t)__ldg(base + s.off + b) << (8 * (b & 3));
    rq_st_shared_v4(dst, w[0], w[1], w[2], w[3]);
  }
}

template <class C>
__device__ __forceinline__ void rq_gemm_cta(const RqGemmPlan &P) {
  typedef RqGemmShape<C> S;
  extern __shared__ __align__(128) uint8_t rq_smem[];
  __shared__ int s_last;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / C::WARPS_N, wn = warp % C::WARPS_N;
  int tm, tn, kt0, kt1;
  rq_tile_of(blockIdx.x, P.tiles_m, P.tiles_n, &tm, &tn);
  rq_split_range(P.ktiles, P.splits, blockIdx.y, &kt0, &kt1);
  const int64_t m0 = (int64_t)tm * C::BM, n0 = (int64_t)tn * C::BN;
  const uint32_t smem0 = rq_smem_u32(rq_smem);

  int32_t acc[S::MI][S::NJ][4];
  float y[S::MI][S::NJ][4];
#pragma unroll
  for (int i = 0; i < S::MI; i++)
#pragma unroll
    for (int j = 0; j < S::NJ; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        acc[i][j][e] = 0;
        y[i][j][e] = rq_y_start();
      }
  bool dirty = false;
  int cur_seg = 0;

  auto load = [&](int kt, int stage) {
    const uint32_t base = smem0 + stage * S::STAGE_BYTES;
    // created per stage (one instruction): a 64-bit policy kept live across the main loop made
    // ptxas spill on sm_80
    const uint64_t policy = C::EVICT_W ? rq_evict_first_policy() : 0;
    auto cpa = [&](uint32_t dst, const RqASrc &src) {
      rq_load_a_chunk(base + dst, src.part ? P.xhi : P.xlo, src, P.gran, P.wq);
    };
    auto cpb = [&](uint32_t dst, int64_t woff) {
      if (C::EVICT_W)
        rq_cp16_hint(base + dst, P.wq + woff, policy);
      else
        rq_cp16(base + dst, P.wq + woff, 16);
    };
    rq_load_stage<C>(P, tid, kt, m0, n0, cpa, cpb);
  };
  auto commit = [&]() { rq_cp_commit(); };
  auto wait_sync = [&]() {
    rq_cp_wait<C::STAGES - 2>();
    __syncthreads();
  };

  // Segment end (or, with split-K, range end): fold the int32 sums into y, or add them to the
  // workspace; then restart the accumulators.
  auto flush = [&](int seg) {
    if (C::SPLIT && P.splits > 1)
      rq_publish_thread<C>(P, seg, warp, lane, m0, n0, acc);
    else
      rq_fold_thread<C>(P, seg, warp, lane, m0, n0, acc, y);
#pragma unroll
    for (int i = 0; i < S::MI; i++)
#pragma unroll
      for (int j = 0; j < S::NJ; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[i][j][e] = 0;
    dirty = false;
  };

  auto compute = [&](int kt, int stage) {
    const uint32_t sa = smem0 + stage * S::STAGE_BYTES, sb = sa + S::A_BYTES;
#pragma unroll
    for (int ks = 0; ks < S::KT; ks++) {
      const int s = kt * S::KT + ks;
      if (s >= P.steps) break;  // padding steps of the last tile
      uint32_t af[S::MI][4], bf[S::NJ][2];
#pragma unroll
      for (int i = 0; i < S::MI; i++) rq_ldsm_x4(af[i], sa + rq_ldsm_a_addr(lane, wm * S::WTM + 16 * i, ks, S::CH));
#pragma unroll
      for (int jj = 0; jj < S::NJ / 2; jj++) {
        uint32_t r[4];
        rq_ldsm_x4(r, sb + rq_ldsm_b_addr(lane, wn * S::WTN + 16 * jj, ks, S::CH));
        rq_split_b(r, bf[2 * jj], bf[2 * jj + 1]);
      }
      auto mma = [&](bool lo, int e_lo, int e_hi, int seg) {
        const bool full = e_lo == 0 && e_hi == (lo ? 64 : 32);
        const uint32_t k0 = full ? 0xffffffffu : rq_bmask(lo, lane, 0, e_lo, e_hi);
        const uint32_t k1 = full ? 0xffffffffu : rq_bmask(lo, lane, 1, e_lo, e_hi);
#pragma unroll
        for (int j = 0; j < S::NJ; j++) {
          const uint32_t b[2] = {bf[j][0] & k0, bf[j][1] & k1};
#pragma unroll
          for (int i = 0; i < S::MI; i++) {
            if (lo)
              rq_mma_u4s4(acc[i][j], af[i], b);
            else
              rq_mma_u8s8(acc[i][j], af[i], b);
          }
        }
        cur_seg = seg;
        dirty = true;
      };
      rq_step_segments(P, s, mma, flush);
    }
  };

  rq_pipeline<C::STAGES>(kt0, kt1, load, commit, wait_sync, compute);
  rq_cp_wait<0>();

  if (!C::SPLIT || P.splits == 1) {
    rq_store_thread<C>(P, warp, lane, m0, n0, y);
    return;
  }
  // split-K: publish this split's sums, count the splits of the tile; the last one folds.
  if (dirty) flush(cur_seg);
  __threadfence();
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(&P.cnt[blockIdx.x], 1u) == (unsigned)(P.splits - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();  // acquire: every other split's atomics are visible
  rq_split_final_thread<C>(P, warp, lane, m0, n0);
  if (tid == 0) P.cnt[blockIdx.x] = 0u;  // counters too are left zeroed for the next call
}

#endif
