// SPDX-License-Identifier: Apache-2.0
// The Hadamard kernel template (one body for the f32, f16 and fused
// Hadamard + 4-bit quantization entry points). Layout, schedule and the exactness
// argument are in rq_hadamard.cuh; every arithmetic step and index used here is a
// function of that header, which the host emulation test replays.
//
// NOTE: compiled only (CUDA 13.0, sm_80/86/89/90) on a machine without a GPU; this
// kernel has never been run. verify/cuda_hadamard_test.c and
// verify/cuda_quant_test.c check it bit for bit against the reference when a GPU
// is present.
//
// Each entry point instantiates this template for ONE I/O policy in its own
// translation unit (resq_hadamard_f32__cuda.cu, resq_hadamard_f16__cuda.cu,
// resq_hadamard_quant_f16_q4__cuda.cu) so that the three compile in parallel.
#ifndef RESQ_CUDA_RQ_HADAMARD_KERNEL_CUH
#define RESQ_CUDA_RQ_HADAMARD_KERNEL_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <string.h>

#include "rq_hadamard.cuh"
#include "rq_host.cuh"
#include "rq_quant.cuh"

// The hadK sign bits (one copy per translation unit; 13.9 KiB of constant bank).
static __constant__ uint32_t c_rq_hadk_masks[RESQ_HADK_NWORDS] = RESQ_HADK_MASK_INIT;

struct rq_had_args {
  const void *x;  // input rows (fused SiLU mode: the gate g)
  int64_t ldx;
  const void *u;  // fused SiLU mode only: the up projection u (f16), else NULL
  int64_t ldu;
  const float *silu;  // fused SiLU mode: the 65536-entry SiLU table (rq_silu_table)
  void *y;            // f32/f16 output (plain Hadamard)
  int64_t ldy;
  const int8_t *signs;  // NULL: all +1
  int64_t rows, row0;   // rows in total, first row of this launch
  float inv;            // resq_hadamard_scale_f32(n)
  int log_m, log_t, lane_bits, warp_bits, row_bits, rpc;
  int vec_in, vec_out;  // 16-byte loads / vector stores allowed (alignment checked on the host)
  // fused 4-bit quantization (r = 0, per token)
  uint8_t *q;
  int64_t ldq;
  float *scale;
  int32_t *zero;
  float clip, maxq;
};

// I/O policies: element types and whether the epilogue quantizes.
struct rq_io_f32 {
  typedef float in_t;
  typedef float out_t;
  static constexpr bool fused = false;
};
struct rq_io_f16 {
  typedef __half in_t;
  typedef __half out_t;
  static constexpr bool fused = false;
};
struct rq_io_q4 {
  typedef __half in_t;
  typedef uint8_t out_t;
  static constexpr bool fused = true;
};

// Load Q contiguous elements (16-byte vectors when allowed, Q >= 8).
template <int Q>
__device__ __forceinline__ void rq_load_run(const float *p, int vec, float *o) {
  if constexpr (Q >= 8) {
    if (vec) {
#pragma unroll
      for (int i = 0; i < Q; i += 4) {
        float4 f = *reinterpret_cast<const float4 *>(p + i);
        o[i] = f.x, o[i + 1] = f.y, o[i + 2] = f.z, o[i + 3] = f.w;
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < Q; i++) o[i] = p[i];
}
template <int Q>
__device__ __forceinline__ void rq_load_run(const __half *p, int vec, float *o) {
  if constexpr (Q >= 8) {
    if (vec) {
#pragma unroll
      for (int i = 0; i < Q; i += 8) {
        uint4 w = *reinterpret_cast<const uint4 *>(p + i);
        const __half2 *h = reinterpret_cast<const __half2 *>(&w);
#pragma unroll
        for (int k = 0; k < 4; k++) {
          float2 f = __half22float2(h[k]);  // exact widening
          o[i + 2 * k] = f.x, o[i + 2 * k + 1] = f.y;
        }
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < Q; i++) o[i] = __half2float(p[i]);
}
// Fused SiLU mode: z = silu(g) * u in fp32 (one multiply), silu(g) from the
// table, which holds resq_silu_f32 (the reference's g / (1 + expf(-g))) of every
// f16 bit pattern, computed on the host (rq_silu_table): bit-identical to the
// reference's SiLU, which the device expf (up to 2 ulp) would not be.
template <int Q>
__device__ __forceinline__ void rq_load_silu(const __half *g, const __half *u, const float *lut, int vec,
                                             float *o) {
  if constexpr (Q >= 8) {
    if (vec) {
#pragma unroll
      for (int i = 0; i < Q; i += 8) {
        uint4 wg = *reinterpret_cast<const uint4 *>(g + i);
        uint4 wu = *reinterpret_cast<const uint4 *>(u + i);
        const uint16_t *hg = reinterpret_cast<const uint16_t *>(&wg);
        const __half *hu = reinterpret_cast<const __half *>(&wu);
#pragma unroll
        for (int k = 0; k < 8; k++) o[i + k] = __fmul_rn(__ldg(lut + hg[k]), __half2float(hu[k]));
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < Q; i++) o[i] = __fmul_rn(__ldg(lut + __half_as_ushort(g[i])), __half2float(u[i]));
}

// Store Q contiguous outputs (f16: one RNE rounding each, __float2half_rn keeps
// subnormals and rounds overflow to +-Inf like resq_f32_to_f16).
template <int Q>
__device__ __forceinline__ void rq_store_run(float *p, int vec, const float *v) {
  if constexpr (Q >= 8) {
    if (vec) {
#pragma unroll
      for (int i = 0; i < Q; i += 4) *reinterpret_cast<float4 *>(p + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < Q; i++) p[i] = v[i];
}
template <int Q>
__device__ __forceinline__ void rq_store_run(__half *p, int vec, const float *v) {
  if constexpr (Q >= 8) {
    if (vec) {
#pragma unroll
      for (int i = 0; i < Q; i += 8) {
        uint4 w;
        uint16_t *h = reinterpret_cast<uint16_t *>(&w);
#pragma unroll
        for (int k = 0; k < 8; k++) h[k] = __half_as_ushort(__float2half_rn(v[i + k]));
        *reinterpret_cast<uint4 *>(p + i) = w;
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < Q; i++) p[i] = __float2half_rn(v[i]);
}

// Packed 4-bit codes of Q contiguous positions starting at the even position
// pos0 (Q >= 2), or of one position with its pair partner in lane ^ 1 (Q = 1,
// T >= 2; the partner is thread t ^ 1 of the same slice), or of the single
// element of an n = 1 row (Q = 1, T = 1, K = 1). Every lane must call this
// (shuffle), `store` says whether it writes.
template <int Q>
__device__ __forceinline__ void rq_store_codes(uint8_t *qrow, int64_t pos0, int vec, const int *c, int T, int t,
                                               bool store) {
  if constexpr (Q >= 2) {
    uint8_t *p = qrow + pos0 / 2;
    if constexpr (Q >= 8) {
      if (vec) {
#pragma unroll
        for (int i = 0; i < Q; i += 8) {
          int cc[8];
#pragma unroll
          for (int k = 0; k < 8; k++) cc[k] = c[i + k];
          if (store) *reinterpret_cast<uint32_t *>(p + i / 2) = rq_qa_pack_lo(cc, 8);
        }
        return;
      }
    }
#pragma unroll
    for (int i = 0; i < Q; i += 2)
      if (store) p[i / 2] = (uint8_t)(c[i] | (c[i + 1] << 4));
  } else {
    if (T >= 2) {
      int partner = __shfl_xor_sync(0xffffffffu, c[0], 1);
      if (store && !(t & 1)) qrow[pos0 / 2] = (uint8_t)(c[0] | (partner << 4));
    } else if (store) {
      qrow[pos0 / 2] = (uint8_t)c[0];  // n = 1: odd count, high nibble 0
    }
  }
}

// Min/max of the row across its 2^row_bits threads (consecutive tids): shuffles
// over the low five bits, then the warps of the row through shared memory.
// Exact and order independent (rq_min/rq_max). Called by every thread.
__device__ __forceinline__ void rq_row_minmax(const rq_had_args &a, int tid, float &mn, float &mx) {
  __shared__ float red[2][32];
  const int lb = a.row_bits < 5 ? a.row_bits : 5;
#pragma unroll 1
  for (int k = 0; k < lb; k++) {
    mn = rq_min(mn, __shfl_xor_sync(0xffffffffu, mn, 1 << k));
    mx = rq_max(mx, __shfl_xor_sync(0xffffffffu, mx, 1 << k));
  }
  if (a.row_bits > 5) {
    const int W = 1 << (a.row_bits - 5);
    const int w0 = (tid >> 5) & ~(W - 1);  // first warp of this row
    if ((tid & 31) == 0) {
      red[0][tid >> 5] = mn;
      red[1][tid >> 5] = mx;
    }
    __syncthreads();
    mn = 0.0f;
    mx = 0.0f;
    for (int w = 0; w < W; w++) {
      mn = rq_min(mn, red[0][w0 + w]);
      mx = rq_max(mx, red[1][w0 + w]);
    }
  }
}

// Expand the sign tile of rows [a0, a0 + na) into shared memory (all threads).
template <int K>
__device__ __forceinline__ void rq_had_fill_tile(float *tile, int a0, int na, int tid, int cta) {
  for (int e = tid; e < na * K; e += cta) {
    int slot, ar, c;
    rq_had_sign_entry(K, a0, e, &slot, &ar, &c);
    tile[slot] = rq_had_sign_value(c_rq_hadk_masks, K, ar, c);
  }
}

template <int K, int Q, class IO>
__global__ void __launch_bounds__(rq_had_maxt(K), (K == 28 && Q == 1) ? 1 : 0) rq_had_kernel(const rq_had_args a) {
  constexpr int S = rq_had_split(K);
  constexpr int KC = K / S;
  constexpr int V = KC * Q;
  constexpr int XS = rq_had_xs(K, Q);
  constexpr int SA = rq_had_sa(K);
  extern __shared__ float4 rq_smem4[];
  float *smem = reinterpret_cast<float *>(rq_smem4);

  const int tid = threadIdx.x;
  const int cta = blockDim.x;
  const int T = 1 << a.log_t;
  const int64_t m = (int64_t)1 << a.log_m;
  rq_had_plan p = {};  // the fields the index helpers read
  p.K = K;
  p.S = S;
  p.log_s = rq_log2i(S);
  p.Q = Q;
  p.log_q = rq_log2i(Q);
  p.log_m = a.log_m;
  p.log_t = a.log_t;
  int rloc, s, t;
  rq_had_coords(p, tid, &rloc, &s, &t);
  const int64_t row = a.row0 + (int64_t)blockIdx.x * a.rpc + rloc;
  const bool valid = row < a.rows;  // invalid threads still take part in shuffles and barriers
  const bool row_lead = (tid & ((1 << a.row_bits) - 1)) == 0;
  // S > 1: the row buffer u[c*m + t] of this CTA row, and the sign tile behind
  // all row buffers; S = 1: the tile aliases the exchange buffers.
  float *U = smem + (size_t)rloc * K * m;
  float *tile = smem + (S > 1 ? (size_t)a.rpc * K * m : 0);

  // 1. load (exact f16 widening; fused SiLU mode: z = silu(g) * u) and sign flip (exact).
  // The signs are first packed into a bit mask (V bits) and a warp barrier keeps
  // ptxas from hoisting the V sign-byte loads next to the V value loads (2V live
  // registers: spills at the register caps).
  float v[V];
  constexpr int NW = (V + 31) / 32;
  uint32_t smask[NW];
#pragma unroll
  for (int w = 0; w < NW; w++) smask[w] = 0u;
  if (a.signs) {
    if (valid) {
#pragma unroll
      for (int cc = 0; cc < KC; cc++) {
        const int64_t pos = rq_had_pos(p, t, s * KC + cc, 0);
#pragma unroll
        for (int q = 0; q < Q; q++) {
          const int i = cc * Q + q;
          smask[i >> 5] |= (((uint32_t)(uint8_t)a.signs[pos + q]) >> 7) << (i & 31);
        }
      }
    }
    __syncwarp();
  }
  {
    const typename IO::in_t *xr = static_cast<const typename IO::in_t *>(a.x) + (valid ? row * a.ldx : 0);
    const __half *ur = static_cast<const __half *>(a.u) + (valid ? row * a.ldu : 0);
#pragma unroll
    for (int cc = 0; cc < KC; cc++) {
      const int64_t pos = rq_had_pos(p, t, s * KC + cc, 0);
      if (valid) {
        if constexpr (IO::fused) {
          if (a.u)
            rq_load_silu<Q>(xr + pos, ur + pos, a.silu, a.vec_in, v + cc * Q);
          else
            rq_load_run<Q>(xr + pos, a.vec_in, v + cc * Q);
        } else {
          rq_load_run<Q>(xr + pos, a.vec_in, v + cc * Q);
        }
      } else {
#pragma unroll
        for (int q = 0; q < Q; q++) v[cc * Q + q] = 0.0f;
      }
      // SiLU mode: three dependent loads per element (g, silu[g], u); a warp
      // barrier every 4 blocks bounds the loads in flight (register pressure)
      if constexpr (IO::fused && KC > 8) {
        if (a.u && (cc & 3) == 3) __syncwarp();
      }
    }
#pragma unroll
    for (int i = 0; i < V; i++) v[i] = __uint_as_float(__float_as_uint(v[i]) ^ (((smask[i >> 5] >> (i & 31)) & 1u) << 31));
  }

  // 2. butterflies, ascending strides: in-thread bits, lane bits, warp bits
  rq_had_thread_stages<KC, Q>(v);
#pragma unroll 1
  for (int k = 0; k < a.lane_bits; k++) {
    const int upper = (t >> k) & 1;
#pragma unroll
    for (int i = 0; i < V; i++) v[i] = rq_bf(v[i], __shfl_xor_sync(0xffffffffu, v[i], 1 << k), upper);
  }
  if (a.warp_bits > 0) {
    const int rbase = tid & ~(T - 1);  // first thread of this slice
    const int own = rbase + rq_xchg_phys(t, a.warp_bits);
    const int src = rbase + rq_xchg_phys(rq_xchg_src(t, a.warp_bits), a.warp_bits);
    // rounds of XS registers; two buffers alternate so that one barrier
    // separates a round's last reads from the next round's writes
#pragma unroll
    for (int r0 = 0; r0 < V; r0 += XS) {
      float *buf = smem + ((r0 / XS) & 1) * XS * cta;
#pragma unroll
      for (int j = 0; j < XS; j++)
        if (r0 + j < V) buf[j * cta + own] = v[r0 + j];
      __syncthreads();
#pragma unroll
      for (int j = 0; j < XS; j++) {
        if (r0 + j < V) {
          float tv = buf[j * cta + src];
#pragma unroll 1
          for (int k = 0; k < a.warp_bits; k++)
            tv = rq_bf(tv, __shfl_xor_sync(0xffffffffu, tv, 1 << k), (t >> k) & 1);
          buf[j * cta + src] = tv;
        }
      }
      __syncthreads();
#pragma unroll
      for (int j = 0; j < XS; j++)
        if (r0 + j < V) v[r0 + j] = buf[j * cta + own];
    }
  }

  // 3. one fp32 multiply by inv
  rq_had_scale<V>(v, a.inv);

  // S > 1: the row goes to shared memory for the mix (after the last exchange
  // reads of the aliased buffers)
  if constexpr (S > 1) {
    __syncthreads();
#pragma unroll
    for (int cc = 0; cc < KC; cc++) U[((int64_t)(s * KC + cc) << a.log_m) + t] = v[cc];
  }

  // 4. the hadK mix (K > 1) and the epilogue
  if constexpr (!IO::fused) {
    typename IO::out_t *yr = static_cast<typename IO::out_t *>(a.y) + (valid ? row * a.ldy : 0);
    if constexpr (K == 1) {
      if (valid) rq_store_run<Q>(yr + rq_had_pos(p, t, 0, 0), a.vec_out, v);
    } else {
#pragma unroll 1
      for (int a0 = 0; a0 < K; a0 += SA) {
        const int na = K - a0 < SA ? K - a0 : SA;
        __syncthreads();  // previous tile (or the exchange buffers) no longer read; row buffer written
        rq_had_fill_tile<K>(tile, a0, na, tid, cta);
        __syncthreads();
        if constexpr (S == 1) {
#pragma unroll 1
          for (int a1 = a0; a1 < a0 + na; a1 += 4) {
            float acc[4][Q];
            rq_had_mix4<K, Q>(v, tile + (a1 - a0) * K, acc);
            if (valid) {
#pragma unroll
              for (int i = 0; i < 4; i++) rq_store_run<Q>(yr + rq_had_pos(p, t, a1 + i, 0), a.vec_out, acc[i]);
            }
          }
        } else {
          const int it = rq_had_col_iters(na, S);
#pragma unroll 1
          for (int i = 0; i < it; i++) {
            int act;
            const int a1 = rq_had_col_group(a0, s, i, S, na, &act);
            float acc[4];
            rq_had_mix4_col<K>(U + t, m, tile + (a1 - a0) * K, acc);
            if (valid && act) {
#pragma unroll
              for (int j = 0; j < 4; j++) rq_store_run<1>(yr + rq_had_pos(p, t, a1 + j, 0), 0, acc + j);
            }
          }
        }
      }
    }
  } else {
    // fused path-A quantization of the fp32 Hadamard output, r = 0, per row:
    // pass 1 finds the exact min/max, pass 2 recomputes the (deterministic) mix
    // and quantizes, so no n-sized output buffer is needed.
    uint8_t *qr = a.q + (valid ? row * a.ldq : 0);
    float mn = 0.0f, mx = 0.0f;
    if constexpr (K == 1) {
#pragma unroll
      for (int i = 0; i < V; i++) mn = rq_min(mn, v[i]), mx = rq_max(mx, v[i]);
    } else {
#pragma unroll 1
      for (int a0 = 0; a0 < K; a0 += SA) {
        const int na = K - a0 < SA ? K - a0 : SA;
        __syncthreads();
        rq_had_fill_tile<K>(tile, a0, na, tid, cta);
        __syncthreads();
        if constexpr (S == 1) {
#pragma unroll 1
          for (int a1 = a0; a1 < a0 + na; a1 += 4) {
            float acc[4][Q];
            rq_had_mix4<K, Q>(v, tile + (a1 - a0) * K, acc);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
              for (int q = 0; q < Q; q++) mn = rq_min(mn, acc[i][q]), mx = rq_max(mx, acc[i][q]);
          }
        } else {
          const int it = rq_had_col_iters(na, S);
#pragma unroll 1
          for (int i = 0; i < it; i++) {
            int act;
            const int a1 = rq_had_col_group(a0, s, i, S, na, &act);
            float acc[4];
            rq_had_mix4_col<K>(U + t, m, tile + (a1 - a0) * K, acc);
            if (act) {
#pragma unroll
              for (int j = 0; j < 4; j++) mn = rq_min(mn, acc[j]), mx = rq_max(mx, acc[j]);
            }
          }
        }
      }
    }
    rq_row_minmax(a, tid, mn, mx);
    float sc, z;
    rq_qa_params(mn, mx, a.clip, a.maxq, &sc, &z);
    if (valid && row_lead) {
      a.scale[row] = sc;
      a.zero[row] = (int32_t)z;
    }
    if constexpr (K == 1) {
      int c[Q];
#pragma unroll
      for (int q = 0; q < Q; q++) c[q] = rq_qa_code(v[q], sc, z, a.maxq);
      rq_store_codes<Q>(qr, rq_had_pos(p, t, 0, 0), a.vec_out, c, T, t, valid);
    } else {
#pragma unroll 1
      for (int a0 = 0; a0 < K; a0 += SA) {
        const int na = K - a0 < SA ? K - a0 : SA;
        if (SA < K) {  // the tile in shared memory is not the one pass 2 starts with
          __syncthreads();
          rq_had_fill_tile<K>(tile, a0, na, tid, cta);
          __syncthreads();
        }
        if constexpr (S == 1) {
#pragma unroll 1
          for (int a1 = a0; a1 < a0 + na; a1 += 4) {
            float acc[4][Q];
            rq_had_mix4<K, Q>(v, tile + (a1 - a0) * K, acc);
            int c[4][Q];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
              for (int q = 0; q < Q; q++) c[i][q] = rq_qa_code(acc[i][q], sc, z, a.maxq);
            if (T == 1) {  // m = 1: the row is the K outputs of this thread; pairs (a, a+1)
              if (valid) {
                qr[a1 / 2] = (uint8_t)(c[0][0] | (c[1][0] << 4));
                qr[a1 / 2 + 1] = (uint8_t)(c[2][0] | (c[3][0] << 4));
              }
            } else {
#pragma unroll
              for (int i = 0; i < 4; i++)
                rq_store_codes<Q>(qr, rq_had_pos(p, t, a1 + i, 0), a.vec_out, c[i], T, t, valid);
            }
          }
        } else {
          const int it = rq_had_col_iters(na, S);
#pragma unroll 1
          for (int i = 0; i < it; i++) {
            int act;
            const int a1 = rq_had_col_group(a0, s, i, S, na, &act);
            float acc[4];
            rq_had_mix4_col<K>(U + t, m, tile + (a1 - a0) * K, acc);
            int c[4];
#pragma unroll
            for (int j = 0; j < 4; j++) c[j] = rq_qa_code(acc[j], sc, z, a.maxq);
            if (T == 1) {
              if (valid && act) {
                qr[a1 / 2] = (uint8_t)(c[0] | (c[1] << 4));
                qr[a1 / 2 + 1] = (uint8_t)(c[2] | (c[3] << 4));
              }
            } else {
#pragma unroll
              for (int j = 0; j < 4; j++)
                rq_store_codes<1>(qr, rq_had_pos(p, t, a1 + j, 0), 0, c + j, T, t, valid && act);
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Host side: dispatch of the (K, Q) instantiations.
// ---------------------------------------------------------------------------
template <int K, int Q, class IO>
static cudaError_t rq_had_launch_kq(const rq_had_plan &p, const rq_had_args &a, unsigned grid, cudaStream_t st) {
  if (p.smem > 48 * 1024) {  // opt in to more than the default 48 KiB (S = 4, m >= 64)
    cudaError_t e =
        cudaFuncSetAttribute(rq_had_kernel<K, Q, IO>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)p.smem);
    if (e != cudaSuccess) return e;
  }
  rq_had_kernel<K, Q, IO><<<grid, p.cta, p.smem, st>>>(a);
  return cudaGetLastError();
}

template <class IO>
static cudaError_t rq_had_launch_plan(const rq_had_plan &p, const rq_had_args &a, unsigned grid, cudaStream_t st) {
  switch (p.K) {
    case 1:
      if (p.Q == 1) return rq_had_launch_kq<1, 1, IO>(p, a, grid, st);
      if (p.Q == 8) return rq_had_launch_kq<1, 8, IO>(p, a, grid, st);
      if (p.Q == 32) return rq_had_launch_kq<1, 32, IO>(p, a, grid, st);
      break;
    case 12: return rq_had_launch_kq<12, 1, IO>(p, a, grid, st);
    case 20: return rq_had_launch_kq<20, 1, IO>(p, a, grid, st);
    case 28: return p.Q == 2 ? rq_had_launch_kq<28, 2, IO>(p, a, grid, st) : rq_had_launch_kq<28, 1, IO>(p, a, grid, st);
    case 36: return rq_had_launch_kq<36, 1, IO>(p, a, grid, st);
    case 40: return rq_had_launch_kq<40, 1, IO>(p, a, grid, st);
    case 44: return rq_had_launch_kq<44, 1, IO>(p, a, grid, st);
    case 52: return rq_had_launch_kq<52, 1, IO>(p, a, grid, st);
    case 60: return rq_had_launch_kq<60, 1, IO>(p, a, grid, st);
    case 108: return rq_had_launch_kq<108, 1, IO>(p, a, grid, st);
    case 140: return rq_had_launch_kq<140, 1, IO>(p, a, grid, st);
    case 156: return rq_had_launch_kq<156, 1, IO>(p, a, grid, st);
    case 172: return rq_had_launch_kq<172, 1, IO>(p, a, grid, st);
    default: break;
  }
  return cudaErrorInvalidValue;
}

// Launch over all rows (several launches if the grid would exceed RQ_MAX_GRID).
// A plan whose shared memory exceeds the device's per-block opt-in limit is
// RESQ_ERR_UNSUPPORTED (does not happen on sm_80/86/89/90 for the documented
// sizes: the largest, 172*128, needs 99,072 bytes of the 101,376 of sm_86/89).
template <class IO>
static resq_status rq_had_run(const rq_had_plan &p, rq_had_args a, const char *what) {
  cudaStream_t st = rq_stream();
  if (p.smem > 48 * 1024) {
    int dev = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
    if ((size_t)optin < p.smem + 256)
      return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: n=%d*%lld needs %zu bytes of shared memory per block, the device allows %d",
                       what, p.K, (long long)1 << p.log_m, p.smem + 256, optin);
  }
  for (int64_t r0 = 0; r0 < a.rows; r0 += RQ_MAX_GRID * p.rpc) {
    int64_t left = a.rows - r0;
    int64_t ctas = (left + p.rpc - 1) / p.rpc;
    if (ctas > RQ_MAX_GRID) ctas = RQ_MAX_GRID;
    a.row0 = r0;
    cudaError_t e = rq_had_launch_plan<IO>(p, a, (unsigned)ctas, st);
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
  }
  return RESQ_OK;
}

// Argument checks in the reference's order and with its status codes
// (resq_hadamard_f32__ref: factor n, then rows/pointers/leading dimensions),
// then this backend's own size limit. The workspace is not used (see cuda.h),
// the sign VALUES are not scanned (device memory; any negative entry flips).
static inline resq_status rq_had_check(int64_t rows, int64_t n, const void *x, int64_t ldx, const void *y,
                                       int64_t ldy, rq_had_plan *p) {
  int K;
  int64_t m;
  resq_status st = resq_hadamard_factor(n, &K, &m);
  if (st) return st;
  if (rows < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: rows=%lld < 0", (long long)rows);
  if (rows > 0 && (!x || !y)) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: NULL input or output");
  if (rows > 1 && (ldx < n || ldy < n))
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: leading dimensions (%lld, %lld) smaller than n=%lld",
                     (long long)ldx, (long long)ldy, (long long)n);
  if (rq_had_make_plan(K, rq_log2i(m), p) != 0)
    return resq_fail(RESQ_ERR_UNSUPPORTED,
                     "hadamard (cuda): n=%lld = %d*%lld exceeds this backend's limit of %d*%lld (see resq/cuda.h)",
                     (long long)n, K, (long long)m, K, (long long)rq_had_max_m(K));
  return RESQ_OK;
}

// Fill the launch arguments common to every entry point.
static inline rq_had_args rq_had_args_for(const rq_had_plan &p, int64_t rows, int64_t n, const void *x,
                                          int64_t ldx, const int8_t *signs, unsigned esize) {
  rq_had_args a;
  memset(&a, 0, sizeof a);
  a.x = x;
  a.ldx = ldx;
  a.signs = signs;
  a.rows = rows;
  a.inv = resq_hadamard_scale_f32(n);
  a.log_m = p.log_m;
  a.log_t = p.log_t;
  a.lane_bits = p.lane_bits;
  a.warp_bits = p.warp_bits;
  a.row_bits = p.row_bits;
  a.rpc = p.rpc;
  // 16-byte loads: every thread's run of Q elements starts at a multiple of Q
  // elements from the row start (m is a multiple of Q), so the row starts must
  // be 16-byte aligned.
  a.vec_in = p.Q >= 8 && rq_aligned(x, 16) && (rows <= 1 || (ldx * (int64_t)esize) % 16 == 0);
  return a;
}

#endif
