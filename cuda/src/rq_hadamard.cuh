// SPDX-License-Identifier: Apache-2.0
// The Hadamard kernels' data layout, schedule and arithmetic, as __host__
// __device__ code shared by the kernels (rq_hadamard_kernel.cuh) and by the host
// emulation test (verify/cuda_host_test.cpp), which replays the kernel's data
// movement thread by thread with these functions and must reproduce
// resq_hadamard_f32__ref bit for bit.
//
// Contract (ref/CONTRACT.md section 2): n = K*m, m = 2^d. (1) sign flip;
// (2) per block of m, radix-2 butterflies (a,b) -> (a+b, a-b) with ascending
// strides h = 1,2,..,m/2; (3) u = t*inv (one fp32 multiply); (4) K > 1:
// y[a*m+b] = sum_c hadK[a][c] u[c*m+b], fp32, strictly c = 0,1,..,K-1.
//
// Why any thread schedule is exact: a butterfly at stride h only reads the two
// values produced at stride h/2 for the same positions. Which thread computes a
// pair, and the order of pairs within one stride, cannot change a bit; only the
// order of the STRIDES matters, and every schedule below runs them ascending:
//   stride bits [0, log Q)            inside a thread (Q contiguous elements)
//   next min(5, log T) bits           lanes, __shfl_xor_sync
//   remaining bits (warps of a row)   shared-memory transpose, then shuffles
// A CTA owns whole rows (one row, or several small rows), so no inter-CTA
// communication exists. The mix of step 4 is one fixed left-to-right chain per
// output element whichever thread runs it.
//
// Layout ("mix layout"): row length n = K*m, T = m/Q threads per block column.
// The K blocks are split into S equal slices of KC = K/S blocks (S = 1 or 4).
// Thread (s, t), s < S, t < T, holds for every block c = s*KC + cc (cc < KC) the
// Q contiguous elements c*m + t*Q + q (q < Q): register v[cc*Q + q]. For the
// butterflies a slice behaves like an independent "virtual row" of KC blocks
// (the butterflies never mix blocks), so the exchange code is the same for
// S = 1 and S = 4.
//   S = 1 (K <= 60): the mix needs no data movement: output y[a*m + t*Q + q] is a
//     dot product of the thread's own K registers of column q with row a of hadK.
//   S = 4 (K >= 108): 172 values per thread do not fit in registers without
//     spills (measured: 1.2 KiB of spill stores for K = 172 with S = 1), so each
//     thread holds KC = K/4 <= 43 values; after step 3 the row is written to
//     shared memory as u[c*m + t] and thread (s, t) computes the outputs of
//     column t for the row groups a = 4g..4g+3 with g = s, s+S, s+2S, ...
//
// The mix runs as FFMA(sign, u, acc) with sign = +-1.0f read from a shared-memory
// tile expanded from the __constant__ bit masks (cuda/src/hadk_masks.cuh): the
// product is exact, so each FFMA is exactly the contract's acc +- u (one
// rounding). Four rows a are accumulated at once (one float4 sign load per c).
#ifndef RESQ_CUDA_RQ_HADAMARD_CUH
#define RESQ_CUDA_RQ_HADAMARD_CUH

#include <stddef.h>
#include <stdint.h>

#include "hadk_masks.cuh"
#include "rq_common.cuh"

// ---------------------------------------------------------------------------
// Compile-time configuration per K (the template instantiations).
// ---------------------------------------------------------------------------
// Block slices per row: 4 for the large orders (registers), else 1.
RQ_HD constexpr int rq_had_split(int K) { return K >= 108 ? 4 : 1; }
// Launch bound (max threads per CTA) of the kernel for order K; it fixes the
// register cap (65536 / maxt): 64 for 1024, 128 for 512. A thread holds
// K/S*Q fp32 values (<= 60), so the orders above 20 get 512 threads (K = 28 with
// 1024 threads and 64 registers spilled: measured 56 bytes).
RQ_HD constexpr int rq_had_maxt(int K) { return K <= 20 ? 1024 : 512; }
// Contiguous elements per block and thread for K > 1: 2 for K = 28 (so that
// 28*1024 = 28672, Llama-2/3-70B's intermediate size, fits 512 threads), else 1.
RQ_HD constexpr int rq_had_qmax(int K) { return K == 28 ? 2 : 1; }
// Exchange slots per shared-memory round: 4096 floats (16 KiB) per buffer.
RQ_HD constexpr int rq_had_xs(int K, int Q) {
  return (4096 / rq_had_maxt(K)) < K / rq_had_split(K) * Q ? (4096 / rq_had_maxt(K)) : K / rq_had_split(K) * Q;
}
// Sign-tile rows: S = 1: a multiple of 4 with sa*K floats <= 8192 (32 KiB), at
// most K; S = 4: 16 rows (the row itself needs the shared memory).
RQ_HD constexpr int rq_had_sa(int K) {
  return K <= 1 ? 0 : rq_had_split(K) > 1 ? 16 : ((8192 / (4 * K)) * 4 >= K ? K : (8192 / (4 * K)) * 4);
}
// Rows per CTA aim at this many threads (small rows share a CTA).
#define RQ_HAD_CTA_TARGET 128
// Chains of the register mix (S = 1) between two warp barriers (see rq_had_mix4).
RQ_HD constexpr int rq_had_mix_seg(int K) { return rq_had_maxt(K) >= 1024 ? 2 : 4; }

// ---------------------------------------------------------------------------
// Plan of one launch (host computes it; kernels receive the fields they need).
// ---------------------------------------------------------------------------
struct rq_had_plan {
  int K;          // 1 or the hadK order
  int S, log_s;   // block slices per row (1 or 4)
  int KC;         // blocks per slice = K / S
  int log_m;      // m = 2^log_m, the Sylvester block length
  int Q;          // contiguous elements per block per thread
  int log_q;
  int log_t;      // threads per slice T = 2^log_t = m / Q
  int lane_bits;  // min(log_t, 5): butterfly stride bits done with shuffles
  int warp_bits;  // log_t - lane_bits: stride bits done through shared memory
  int row_bits;   // log2 of the threads per row (S*T): the fused quantizer's row reduction
  int rpc;        // rows per CTA
  int cta;        // threads per CTA = S * T * rpc
  int maxt;       // launch bound of the instantiation
  int xs;         // exchange slots per round (instantiation constant)
  int sa;         // sign-tile rows (instantiation constant)
  size_t u_floats;  // S > 1: floats of the row buffer (rpc * n) in front of the sign tile
  size_t smem;    // dynamic shared memory in bytes
};

// Q for order K and block length m (the only Q values that are instantiated:
// K = 1: 1, 8, 32; K = 28: 1 (m = 1), 2; other K > 1: 1). K = 1 holds 8 (or 32 for
// m >= 16384) contiguous elements: 16-byte loads and 3 (5) in-thread stages.
// K > 1 holds one (K = 28: two) elements per block: the thread already holds K/S
// values, registers are the limit.
RQ_HD int rq_had_q_for(int K, int64_t m) {
  if (K > 1) return m < rq_had_qmax(K) ? (int)m : rq_had_qmax(K);
  if (m < 8) return 1;
  if (m < 16384) return 8;
  return 32;
}

// Largest supported block length m for order K (documented limits, resq/cuda.h):
//   K = 1: m <= 32768 (Q = 32, 1024 threads);
//   K > 1: S * m / Q <= rq_had_maxt(K) threads per row
//          (12, 20: 1024; 28: 2*512; 36..60: 512; 108..172: 128).
RQ_HD int64_t rq_had_max_m(int K) {
  return K == 1 ? 32768 : (int64_t)(rq_had_maxt(K) / rq_had_split(K)) * rq_had_qmax(K);
}

// Fill the plan for n = K * 2^log_m (K, log_m from resq_hadamard_factor).
// Returns 0 on success, -1 if this backend does not support the size.
RQ_HD int rq_had_make_plan(int K, int log_m, rq_had_plan *p) {
  int64_t m = (int64_t)1 << log_m;
  if (log_m > 30 || m > rq_had_max_m(K)) return -1;
  p->K = K;
  p->S = rq_had_split(K);
  p->log_s = rq_log2i(p->S);
  p->KC = K / p->S;
  p->log_m = log_m;
  p->Q = rq_had_q_for(K, m);
  p->log_q = rq_log2i(p->Q);
  p->log_t = log_m - p->log_q;
  p->lane_bits = p->log_t < 5 ? p->log_t : 5;
  p->warp_bits = p->log_t - p->lane_bits;
  p->row_bits = p->log_t + p->log_s;
  p->maxt = rq_had_maxt(K);
  int per_row = p->S << p->log_t;
  p->rpc = per_row >= RQ_HAD_CTA_TARGET ? 1 : RQ_HAD_CTA_TARGET / per_row;
  p->cta = per_row * p->rpc;
  p->xs = rq_had_xs(K, p->Q);
  p->sa = rq_had_sa(K);
  size_t xchg = p->warp_bits > 0 ? (size_t)2 * p->xs * p->cta : 0;  // floats
  size_t sgn = (size_t)p->sa * K;
  if (p->S == 1) {
    p->u_floats = 0;
    p->smem = (xchg > sgn ? xchg : sgn) * sizeof(float);
  } else {
    // the exchange buffers alias the row buffer (used before it is written)
    p->u_floats = (size_t)p->rpc * (size_t)K * (size_t)m;
    if (xchg > p->u_floats) return -1;  // cannot happen: 2*xs*S <= 64 < K floats per column
    p->smem = (p->u_floats + sgn) * sizeof(float);
  }
  return 0;
}

// Position in the row of block c (global block index), element q of thread t.
RQ_HD int64_t rq_had_pos(const rq_had_plan &p, int t, int c, int q) {
  return ((int64_t)c << p.log_m) + ((int64_t)t << p.log_q) + q;
}

// Thread index tid of a CTA -> (row in CTA, slice, thread in slice). The
// threads of one slice are consecutive ("virtual row" vr = rloc*S + s), so the
// lane bits of tid are the low bits of t.
RQ_HD void rq_had_coords(const rq_had_plan &p, int tid, int *rloc, int *s, int *t) {
  int vr = tid >> p.log_t;
  *t = tid & ((1 << p.log_t) - 1);
  *s = vr & (p.S - 1);
  *rloc = vr >> p.log_s;
}

// One butterfly seen from one side: the lower element (stride bit 0) becomes
// a + b, the upper one a - b, where a is the lower and b the upper value.
RQ_HD float rq_bf(float own, float other, int upper) { return upper ? rq_sub(other, own) : rq_add(own, other); }

// Stride bits [0, log Q): inside the thread, ascending strides.
template <int KC, int Q>
RQ_HD void rq_had_thread_stages(float (&v)[KC * Q]) {
RQ_UNROLL
  for (int h = 1; h < Q; h <<= 1) {
RQ_UNROLL
    for (int c = 0; c < KC; c++) {
RQ_UNROLL
      for (int q = 0; q < Q; q++) {
        if (q & h) continue;
        float a = v[c * Q + q], b = v[c * Q + q + h];
        v[c * Q + q] = rq_add(a, b);
        v[c * Q + q + h] = rq_sub(a, b);
      }
    }
  }
}

// Shared-memory transpose for the warp stride bits of a slice with W = 2^warp_bits
// warps (T = 32*W threads). The element of thread t = w*32 + l is stored at
// rq_xchg_phys(t); thread t' then reads the element of thread rq_xchg_src(t') =
// (t' mod W)*32 + t'/W, so in the transposed layout the low warp_bits lane bits
// of t' ARE the original warp index w: shuffles with xor 1,2,..,W/2 perform the
// stride levels log Q + 5 + k, k ascending. The XOR swizzle of the lane index
// makes both the row-major write and the transposed read bank-conflict free.
RQ_HD int rq_xchg_phys(int t, int warp_bits) {
  int w = t >> 5, l = t & 31;
  return (w << 5) + (l ^ ((w << (5 - warp_bits)) & 31));
}
RQ_HD int rq_xchg_src(int tp, int warp_bits) {
  int W = 1 << warp_bits;
  return ((tp & (W - 1)) << 5) + (tp >> warp_bits);
}

// Step 3: one fp32 multiply by the reciprocal square root.
template <int V>
RQ_HD void rq_had_scale(float (&v)[V], float inv) {
RQ_UNROLL
  for (int s = 0; s < V; s++) v[s] = rq_mul(v[s], inv);
}

// Sign tile entry e (0 <= e < rows*K) of the tile starting at row a0: its
// position in the tile is [(a-a0)/4][c][(a-a0)%4] (float4 per c and group of four
// rows), its value +1 or -1 from the bit masks of order K.
RQ_HD void rq_had_sign_entry(int K, int a0, int e, int *slot, int *a, int *c) {
  int ar = e / K;
  *c = e - ar * K;
  *a = a0 + ar;
  *slot = ((ar >> 2) * K + *c) * 4 + (ar & 3);
}
RQ_HD float rq_had_sign_value(const uint32_t *masks, int K, int a, int c) {
  int W = (K + 31) >> 5;
  uint32_t word = masks[RESQ_HADK_OFFSET(K) + a * W + (c >> 5)];
  return ((word >> (c & 31)) & 1u) ? -1.0f : 1.0f;
}

// Step 4 (S = 1) for four rows a1..a1+3 and every column q of the thread:
//   acc[i][q] = s[a1+i][0]*u[0][q]; acc = fma(s[a1+i][c], u[c][q], acc), c = 1..K-1
// tile points at the float4 of (row group a1, c = 0). The first term is an exact
// multiply by +-1 (the contract's acc = +-u_0).
template <int K, int Q>
RQ_HD void rq_had_mix4(const float (&v)[K * Q], const float *tile, float (&acc)[4][Q]) {
  {
    float s0 = tile[0], s1 = tile[1], s2 = tile[2], s3 = tile[3];
RQ_UNROLL
    for (int q = 0; q < Q; q++) {
      acc[0][q] = rq_mul(s0, v[q]);
      acc[1][q] = rq_mul(s1, v[q]);
      acc[2][q] = rq_mul(s2, v[q]);
      acc[3][q] = rq_mul(s3, v[q]);
    }
  }
RQ_UNROLL
  for (int c = 1; c < K; c++) {
#if defined(__CUDA_ARCH__)
    // Every rq_had_mix_seg(K) columns a warp-level memory barrier: without it
    // ptxas hoists all K-1 shared-memory sign loads above the FFMA chains
    // (4*(K-1) live registers) and then spills. With it at most that many float4
    // loads are in flight (2 under the 64-register cap of 1024-thread kernels),
    // enough to cover the shared-memory latency with four independent chains.
    if (c % rq_had_mix_seg(K) == 0) __syncwarp();
    float4 s = reinterpret_cast<const float4 *>(tile)[c];
    float s0 = s.x, s1 = s.y, s2 = s.z, s3 = s.w;
#else
    float s0 = tile[4 * c], s1 = tile[4 * c + 1], s2 = tile[4 * c + 2], s3 = tile[4 * c + 3];
#endif
RQ_UNROLL
    for (int q = 0; q < Q; q++) {
      float u = v[c * Q + q];
      acc[0][q] = rq_fma_sign(s0, u, acc[0][q]);
      acc[1][q] = rq_fma_sign(s1, u, acc[1][q]);
      acc[2][q] = rq_fma_sign(s2, u, acc[2][q]);
      acc[3][q] = rq_fma_sign(s3, u, acc[3][q]);
    }
  }
}

// Step 4 (S = 4, Q = 1) for four rows a1..a1+3 of one column: ucol points at
// u[0*m + t] in the row buffer (stride m between blocks), tile at the float4 of
// (row group a1, c = 0). Same chains, same order as rq_had_mix4.
template <int K>
RQ_HD void rq_had_mix4_col(const float *ucol, int64_t m, const float *tile, float (&acc)[4]) {
  {
    float u = ucol[0];
    acc[0] = rq_mul(tile[0], u);
    acc[1] = rq_mul(tile[1], u);
    acc[2] = rq_mul(tile[2], u);
    acc[3] = rq_mul(tile[3], u);
  }
#if defined(__CUDA_ARCH__)
#pragma unroll 6
#endif
  for (int c = 1; c < K; c++) {
    float u = ucol[c * m];
#if defined(__CUDA_ARCH__)
    float4 s = reinterpret_cast<const float4 *>(tile)[c];
    float s0 = s.x, s1 = s.y, s2 = s.z, s3 = s.w;
#else
    float s0 = tile[4 * c], s1 = tile[4 * c + 1], s2 = tile[4 * c + 2], s3 = tile[4 * c + 3];
#endif
    acc[0] = rq_fma_sign(s0, u, acc[0]);
    acc[1] = rq_fma_sign(s1, u, acc[1]);
    acc[2] = rq_fma_sign(s2, u, acc[2]);
    acc[3] = rq_fma_sign(s3, u, acc[3]);
  }
}

// S = 4: row groups (of four rows) of the tile [a0, a0+na) done by slice s, as a
// loop with the SAME trip count for every slice (a warp can hold several slices
// when T < 32, and the code packing below shuffles): iteration i handles group
// a0/4 + s + i*S if it lies in the tile, else nothing (active = 0).
RQ_HD int rq_had_col_iters(int na, int S) { return ((na >> 2) + S - 1) / S; }
RQ_HD int rq_had_col_group(int a0, int s, int i, int S, int na, int *active) {
  int a1 = a0 + 4 * (s + i * S);
  *active = a1 < a0 + na;
  return *active ? a1 : a0;  // inactive: a valid dummy row group, results unused
}

#endif
