// SPDX-License-Identifier: Apache-2.0
// The mixed INT4/INT8 GEMM's index math, layouts, fragment masks, register
// unpacking, pipeline/segment control flow and epilogue arithmetic, as
// __host__ __device__ code. The kernel (rq_gemm_kernel.cuh) runs exactly these
// functions per thread; the host emulation test verify/cuda_gemm_host_test.cu
// runs them for every thread of every CTA with cp.async / ldmatrix / mma
// emulated from the PTX ISA's definitions, and must reproduce
// resq_gemm_q4q8_{f16,f32}__ref bit for bit.
//
// Numerics (ref/CONTRACT.md section 11):
//   integer part: for every segment (one part of one group) an int32 sum of
//     u4 x s4 (lo) or u8 x s8 (hi) products -- exact in any order within the
//     contract's K limits, so tensor-core accumulation order and the split-K
//     reduction (int32 atomics) cannot change it;
//   epilogue: i = acc - z*sum (int32), t = (a*w)*(float)i (two fp32 multiplies,
//     RNE, no FMA), y = y + t over the segments in K order (lo parts of groups
//     0..G-1, then hi parts), then y + bias, then RNE to f16.
//   y starts at -0.0f: (-0) + t == t exactly for every t (also t = +-0), so
//   the first addition reproduces the reference's "y = t_0".
//
// K stream. A weight row and an activation row are both seen as one byte
// stream cut into k-steps of 32 bytes: first the lo part (packed u4/s4
// nibbles, element 2i in the low nibble, the canonical layout), zero padded to
// steps_lo = ceil(lo_bytes/32) steps, then the hi part (u8/s8 bytes) padded to
// steps_hi = ceil(hi_bytes/32) steps. A lo step is one m16n8k64 u4.s4 MMA, a
// hi step one m16n8k32 u8.s8 MMA: both read 32 bytes per row, so both phases
// share the smem layout, the cp.async code and the ldmatrix code. The
// activations are read in place from the quantizer's layout (q_lo, q_hi); the
// weight is repacked offline (rq_w_offset). Padding is zero in the weight, and
// every activation byte beyond a row's valid bytes is zero-filled in shared
// memory, so padded products are 0 (also an odd K_lo's pad nibble: W's is 0).
//
// Segments. A segment is one part of one group: seg g < seg_lo is the lo part
// of group g, seg seg_lo + g the hi part of group g (K order). Per token
// (G = 1) the two parts start on step boundaries, so a step belongs to one
// segment. Grouped (o_proj, G > 1) groups are contiguous in the stream (even
// group - r, CONTRACT section 5), so a step can hold the end of one group and
// the start of the next: the step is then issued once per segment with the
// weight (B) fragment masked to that segment's elements (rq_bmask), and the
// int32 accumulators are folded into the fp32 output at each segment end.
#ifndef RESQ_CUDA_RQ_GEMM_CUH
#define RESQ_CUDA_RQ_GEMM_CUH

#include <stddef.h>
#include <stdint.h>

#include "resq/dtype.h"
#include "rq_common.cuh"
#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

// ---- tile configurations ---------------------------------------------------------------------
// BM x BN output tile per CTA, BK stream bytes per pipeline stage (BK/32 k-steps), WARPS_M x
// WARPS_N warps, STAGES cp.async stages, SPLIT: split-K code compiled in. Decode (16 rows per
// tile, weight streaming with L2 evict_first, split-K over CTAs) and prefill (large M, compute
// bound; 64 int32 accumulators + 64 fp32 outputs per thread leave no registers for the split-K
// path, and a prefill grid that needs split-K to fill the GPU is better served by the decode
// tiles, so the launcher never splits it).
struct RqGemmDecode {
  enum { BM = 16, BN = 64, BK = 128, WARPS_M = 1, WARPS_N = 4, STAGES = 4, EVICT_W = 1, SPLIT = 1, ID = 1 };
};
struct RqGemmPrefill {
  enum { BM = 128, BN = 128, BK = 64, WARPS_M = 2, WARPS_N = 4, STAGES = 4, EVICT_W = 0, SPLIT = 0, ID = 2 };
};

template <class C>
struct RqGemmShape {
  enum {
    THREADS = 32 * C::WARPS_M * C::WARPS_N,
    WTM = C::BM / C::WARPS_M,  // warp tile rows
    WTN = C::BN / C::WARPS_N,  // warp tile columns
    MI = WTM / 16,             // m16 MMA tiles per warp
    NJ = WTN / 8,              // n8 MMA tiles per warp
    KT = C::BK / 32,           // k-steps per stage
    CH = C::BK / 16,           // 16-byte chunks per smem row
    A_CHUNKS = C::BM * CH,
    B_CHUNKS = C::BN * CH,
    A_ITERS = (A_CHUNKS + THREADS - 1) / THREADS,
    B_ITERS = (B_CHUNKS + THREADS - 1) / THREADS,
    A_BYTES = C::BM * C::BK,
    STAGE_BYTES = (C::BM + C::BN) * C::BK,
    SMEM = C::STAGES * STAGE_BYTES
  };
};

// ---- packed weight layout ----------------------------------------------------------------------
// Rows padded to RQ_W_NPAD (the largest BN), the stream padded to whole 128-byte blocks. Blocks of
// 64 rows x 128 bytes are contiguous (8 KiB): the decode CTA's stage is one block (a single
// contiguous 8 KiB read), the prefill CTA's stage is two half blocks. Within a block row r is at
// r*128: every 16-byte chunk is contiguous and 16-byte aligned.
#define RQ_W_NPAD 128
#define RQ_W_BROWS 64
#define RQ_W_BBYTES 128
RQ_HD int64_t rq_w_offset(int64_t n, int64_t kbyte, int64_t kblocks) {
  return ((n >> 6) * kblocks + (kbyte >> 7)) * (RQ_W_BROWS * RQ_W_BBYTES) + (n & 63) * RQ_W_BBYTES + (kbyte & 127);
}
RQ_HD int64_t rq_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
RQ_HD int64_t rq_round_up(int64_t a, int64_t b) { return rq_ceil_div(a, b) * b; }

// ---- the launch plan (host fills it, passed by value to the kernel) ----------------------------
struct RqGemmPlan {
  // shape
  int M, N, Np;            // rows, columns, columns padded to RQ_W_NPAD
  int G, lpg, r;           // groups, lo elements (nibbles) and hi elements (bytes) per group
  int lo_bytes, hi_bytes;  // valid bytes of an activation row's lo / hi part
  int steps_lo, steps_hi, steps;
  int seg_lo, nseg;        // lo segments (G or 0), all segments
  int kblocks;             // 128-byte blocks per weight row
  // launch
  int tiles_m, tiles_n, ktiles, splits;
  int gran;      // activation load granule: 16, 8 or 4 (cp.async size) or 1 (synchronous bytes)
  int out_f32;   // 1: fp32 output, 0: f16 (RNE)
  int vec_out;   // y and ldy allow 2-element vector stores
  int64_t ld_lo, ld_hi, ldy;
  // activations (device)
  const uint8_t *xlo, *xhi;
  const float *xs_lo, *xs_hi;
  const int32_t *xz_lo, *xz_hi;
  // packed weight (device)
  const uint8_t *wq;
  const float *ws_lo, *ws_hi;
  const int32_t *wsum;  // [nseg][Np]
  const float *bias;    // NULL or [N]
  void *y;
  // split-K workspace: int32 [nseg][M][Np], then uint32 counters [tiles_m*tiles_n]
  int32_t *ws;
  unsigned int *cnt;
};

// Raster order of the output tiles: groups of RQ_GROUP_M tile rows sweep all tile columns, so
// CTAs resident together share A rows and B columns in L2 (threadblock swizzle).
#define RQ_GROUP_M 8
RQ_HD void rq_tile_of(int pid, int tiles_m, int tiles_n, int *tm, int *tn) {
  int per_group = RQ_GROUP_M * tiles_n;
  int group = pid / per_group;
  int first = group * RQ_GROUP_M;
  int gsize = tiles_m - first < RQ_GROUP_M ? tiles_m - first : RQ_GROUP_M;
  int in = pid - group * per_group;
  *tm = first + in % gsize;
  *tn = in / gsize;
}
// k-tiles [kt0, kt1) of split s (near-equal, in order, together exactly [0, ktiles)).
RQ_HD void rq_split_range(int ktiles, int splits, int s, int *kt0, int *kt1) {
  *kt0 = (int)((int64_t)s * ktiles / splits);
  *kt1 = (int)((int64_t)(s + 1) * ktiles / splits);
}

// ---- shared memory: XOR swizzle of 16-byte chunks ----------------------------------------------
// Row `row` of a tile with CH chunks per row (CH = 4: 64-byte rows, CH = 8: 128-byte rows),
// chunk c is stored at chunk c ^ sw(row), sw(row) = (row*CH/8) mod CH. Eight rows read by one
// ldmatrix 8x8 matrix at the same logical chunk then hit 8 distinct 16-byte bank groups (the host
// test checks it), and 8 consecutive threads writing 8 consecutive chunks do too.
RQ_HD uint32_t rq_swz(int row, int chunk, int CH) {
  int sw = ((row * CH) >> 3) & (CH - 1);
  return (uint32_t)(row * CH * 16 + ((chunk ^ sw) << 4));
}

// ---- global -> shared chunk assignment -----------------------------------------------------------
// Thread tid, iteration it: chunk index idx = it*THREADS + tid -> (row = idx / CH, chunk = idx % CH)
// of the A tile (BM rows) or B tile (BN rows). Consecutive threads take consecutive chunks of a
// row (coalesced reads).
RQ_HD bool rq_chunk_of(int tid, int it, int threads, int rows, int CH, int *row, int *chunk) {
  int idx = it * threads + tid;
  *row = idx / CH;
  *chunk = idx - *row * CH;
  return *row < rows;
}

// The activation bytes of one A chunk: stream bytes [kb, kb+16) of row m. Returns the part
// (0 lo, 1 hi), the byte offset from the part's base pointer and the number of valid bytes
// (0..16; the rest of the chunk is zero-filled). Rows >= M are all zero.
struct RqASrc {
  int part;
  int valid;
  int64_t off;
};
RQ_HD RqASrc rq_a_src(const RqGemmPlan &P, int64_t m, int64_t kb) {
  RqASrc s;
  int64_t lo_end = (int64_t)P.steps_lo * 32;
  s.part = kb >= lo_end;
  int64_t pb = s.part ? kb - lo_end : kb;           // byte within the part
  int64_t nbytes = s.part ? P.hi_bytes : P.lo_bytes;
  int64_t v = nbytes - pb;
  s.valid = (m >= P.M || v <= 0) ? 0 : (v >= 16 ? 16 : (int)v);
  s.off = s.valid ? m * (s.part ? P.ld_hi : P.ld_lo) + pb : 0;
  return s;
}

// ---- ldmatrix lane addresses -----------------------------------------------------------------
// ldmatrix.m8n8.x4.b16: lanes 8q..8q+7 give the row addresses of matrix q; afterwards lane l
// holds, in register q, the 4 bytes [4*(l%4), 4*(l%4)+4) of row l/4 of matrix q. One matrix is
// 8 rows x 16 bytes, i.e. 8 rows x one chunk.
// A (row-major X, MMA "row" operand), m16 tile at tile row r0, k-step ks (chunks 2ks, 2ks+1):
//   matrix 0: rows r0..r0+7, chunk 2ks     -> a0 (rows g, k-bytes 4t..4t+3)
//   matrix 1: rows r0+8..r0+15, chunk 2ks  -> a1 (rows g+8)
//   matrix 2: rows r0..r0+7, chunk 2ks+1   -> a2 (rows g, k-bytes 16+4t..)
//   matrix 3: rows r0+8..r0+15, chunk 2ks+1-> a3
// which is the PTX A fragment of m16n8k64 .u4 (8 nibbles per register) and of m16n8k32 .u8
// (4 bytes per register) alike.
RQ_HD uint32_t rq_ldsm_a_addr(int lane, int r0, int ks, int CH) {
  int q = lane >> 3, rr = lane & 7;
  return rq_swz(r0 + rr + 8 * (q & 1), 2 * ks + (q >> 1), CH);
}
// B (W rows = output columns, MMA "col" operand), two n8 tiles at tile row n0 and n0+8:
//   matrix 0: rows n0..n0+7, chunk 2ks     -> b0 of tile n0  (k-bytes 4t..4t+3 of column g)
//   matrix 1: rows n0..n0+7, chunk 2ks+1   -> b1 of tile n0  (k-bytes 16+4t..)
//   matrix 2: rows n0+8.., chunk 2ks       -> b0 of tile n0+8
//   matrix 3: rows n0+8.., chunk 2ks+1     -> b1 of tile n0+8
RQ_HD uint32_t rq_ldsm_b_addr(int lane, int n0, int ks, int CH) {
  int q = lane >> 3, rr = lane & 7;
  return rq_swz(n0 + rr + 8 * (q >> 1), 2 * ks + (q & 1), CH);
}

// The registers of one ldmatrix.x4 of B (rq_ldsm_b_addr): the fragments of n8 tiles j and j+1.
RQ_HD void rq_split_b(const uint32_t r[4], uint32_t bj[2], uint32_t bj1[2]) {
  bj[0] = r[0];
  bj[1] = r[1];
  bj1[0] = r[2];
  bj1[1] = r[3];
}

// ---- B fragment masks (grouped segments) -----------------------------------------------------
// Register jj of lane's B fragment covers step elements [p, p + per): lo (m16n8k64 s4):
// p = 8t + 32jj, 8 nibbles; hi (m16n8k32 s8): p = 4t + 16jj, 4 bytes (t = lane % 4, PTX B
// fragment: row = t*8 + (i&7) (+32 for i >= 8), resp. t*4 + (i&3) (+16 for i >= 4)).
// Keep the elements in [e_lo, e_hi).
RQ_HD uint32_t rq_ones(int bits) { return bits >= 32 ? 0xffffffffu : (bits <= 0 ? 0u : ((1u << bits) - 1u)); }
RQ_HD uint32_t rq_bmask(bool lo, int lane, int jj, int e_lo, int e_hi) {
  int t = lane & 3;
  int per = lo ? 8 : 4, bpe = lo ? 4 : 8;
  int p = lo ? 8 * t + 32 * jj : 4 * t + 16 * jj;
  int a = e_lo - p, b = e_hi - p;
  a = a < 0 ? 0 : (a > per ? per : a);
  b = b < 0 ? 0 : (b > per ? per : b);
  return rq_ones(b * bpe) & ~rq_ones(a * bpe);
}

// ---- sm_90: 4-bit -> 8-bit register unpacking ------------------------------------------------
// sm_90 has no 4-bit tensor cores (an s4 mma.sync compiles to an emulation call). One m16n8k64
// u4.s4 step is computed as two m16n8k32 u8.s8 MMAs on unpacked registers: the even nibbles of
// every A and B register form the first MMA's operands, the odd nibbles the second's. In the
// k64 layout lane (g, t) register j holds k = 8t + 32h + i (i = 0..7, h = k-half); in the k32
// layout byte b of register j is k-slot 4t + 16h + b. Even nibble 2b -> slot 4t+16h+b is the same
// k permutation for A (h = j>>1) and B (h = j), so both MMAs together form the same dot
// products; int32 sums are exact in any order. (The host test checks it against the k64 MMA.)
RQ_HD uint32_t rq_u4_even(uint32_t x) { return x & 0x0f0f0f0fu; }
RQ_HD uint32_t rq_u4_odd(uint32_t x) { return (x >> 4) & 0x0f0f0f0fu; }
// Sign extension of 4 nibbles in the low halves of 4 bytes: the byte's bit 3 (0 or 8) times 30
// is 0xf0 or 0 (no carry between bytes: 8*30 = 240 < 256), OR-ed into the high half.
RQ_HD uint32_t rq_sext4(uint32_t v) { return v | ((v & 0x08080808u) * 30u); }
RQ_HD uint32_t rq_s4_even(uint32_t x) { return rq_sext4(x & 0x0f0f0f0fu); }
RQ_HD uint32_t rq_s4_odd(uint32_t x) { return rq_sext4((x >> 4) & 0x0f0f0f0fu); }

// ---- accumulator element -> tile position ---------------------------------------------------------
// PTX C/D fragment (m16n8k64 and m16n8k32): element e of lane (g = lane/4, t = lane%4) is at
// row g + 8*(e >= 2), column 2t + (e & 1). MMA tile (i, j) of warp (wm, wn).
template <class C>
RQ_HD void rq_elem_pos(int warp, int lane, int i, int j, int e, int *row, int *col) {
  typedef RqGemmShape<C> S;
  int wm = warp / C::WARPS_N, wn = warp % C::WARPS_N;
  *row = wm * S::WTM + 16 * i + (lane >> 2) + 8 * (e >> 1);
  *col = wn * S::WTN + 8 * j + 2 * (lane & 3) + (e & 1);
}

// ---- epilogue arithmetic (CONTRACT section 11, exact order) -------------------------------------
RQ_HD float rq_i2f(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int2float_rn(i);
#else
  return (float)i;  // IEEE conversion, round to nearest even
#endif
}
// Integer part of one segment: i = acc - z*sum (int32; |i| <= 240*K_lo or 65280*K_hi < 2^31
// within the contract's limits, so no wrap; computed in uint32 so the host compiler sees no
// signed-overflow UB either -- two's complement wrap gives the same bits).
RQ_HD int32_t rq_seg_int(int32_t acc, int32_t z, int32_t sum) {
  return (int32_t)((uint32_t)acc - (uint32_t)z * (uint32_t)sum);
}
// t = (a*w)*(float)i, two separately rounded fp32 multiplies, no FMA.
RQ_HD float rq_seg_term(float a, float w, int32_t i) { return rq_mul(rq_mul(a, w), rq_i2f(i)); }
RQ_HD float rq_y_start(void) { return -0.0f; }
RQ_HD float rq_y_add(float y, float t) { return rq_add(y, t); }

// Segment seg -> part (0 lo, 1 hi) and group.
RQ_HD void rq_seg_part(const RqGemmPlan &P, int seg, int *part, int *g) {
  *part = seg >= P.seg_lo;
  *g = *part ? seg - P.seg_lo : seg;
}
// The per-row (activation) and per-column (weight) epilogue parameters of segment seg.
RQ_HD void rq_seg_row(const RqGemmPlan &P, int seg, int64_t m, float *a, int32_t *z) {
  int part, g;
  rq_seg_part(P, seg, &part, &g);
  int64_t xi = m * P.G + g;
  *a = part ? P.xs_hi[xi] : P.xs_lo[xi];
  *z = part ? P.xz_hi[xi] : P.xz_lo[xi];
}
RQ_HD void rq_seg_col(const RqGemmPlan &P, int seg, int64_t n, float *w, int32_t *sum) {
  *w = seg >= P.seg_lo ? P.ws_hi[n] : P.ws_lo[n];
  *sum = P.wsum[(int64_t)seg * P.Np + n];
}
// The fp32 term of segment seg at output (m, n) (m < M, n < Np) from its int32 sum.
RQ_HD float rq_seg_fold(const RqGemmPlan &P, int seg, int64_t m, int64_t n, int32_t acc) {
  float a, w;
  int32_t z, sum;
  rq_seg_row(P, seg, m, &a, &z);
  rq_seg_col(P, seg, n, &w, &sum);
  return rq_seg_term(a, w, rq_seg_int(acc, z, sum));
}

// ---- the k-step walk over segments ---------------------------------------------------------------
// Step s (0 <= s < P.steps): calls mma(lo, e_lo, e_hi, seg) for every segment with elements in the
// step (element range relative to the step; (0, E) is the whole step, E = 64 nibbles lo, 32 bytes
// hi), in K order, and flush(seg) after the segment's last element. The last group of a part owns
// the part's padding, so it ends with the part's last step.
template <class Mma, class Flush>
RQ_HD void rq_step_segments(const RqGemmPlan &P, int s, Mma &mma, Flush &flush) {
  const bool lo = s < P.steps_lo;
  const int E = lo ? 64 : 32;
  const int sp = lo ? s : s - P.steps_lo;
  const bool part_end = sp == (lo ? P.steps_lo - 1 : P.steps_hi - 1);
  const int seg0 = lo ? 0 : P.seg_lo;
  const int64_t gsz = lo ? P.lpg : P.r;
  const int64_t e0 = (int64_t)sp * E;
  int g = 0;
  if (P.G > 1) {
    g = (int)(e0 / gsz);
    if (g > P.G - 1) g = P.G - 1;
  }
  // one mma and one flush call site (inlined once: the per-token case, G = 1, is the first
  // iteration of the same loop with the whole step and no mask)
  for (;;) {
    const bool lastg = g == P.G - 1;
    const int64_t gb = (int64_t)g * gsz, ge = lastg ? e0 + E : (int64_t)(g + 1) * gsz;
    const int a = gb > e0 ? (int)(gb - e0) : 0;
    const int b = ge < e0 + E ? (int)(ge - e0) : E;
    // the last group owns the part's padding and ends with the part; another group ends where
    // the next one starts
    const bool ends = lastg ? part_end : ge <= e0 + E;
    const bool more = !lastg && ge < e0 + E;  // the next group starts inside this step
    mma(lo, a, b, seg0 + g);
    if (ends) flush(seg0 + g);
    if (!more) return;
    g++;
  }
}

// ---- the cp.async pipeline ----------------------------------------------------------------------
// k-tiles [kt0, kt1): STAGES-1 tiles in flight. Iteration kt: wait until tile kt has landed and
// every thread is done with tile kt-1 (wait_sync: cp.async.wait_group STAGES-2 + __syncthreads),
// refill the stage of tile kt-1 with tile kt+STAGES-1, then compute tile kt. One commit per
// iteration (possibly empty) keeps the group count = tiles issued, so wait_group(STAGES-2) always
// means "tile kt complete". Loads done synchronously (granule 1) are ordered by the same barriers.
template <int STAGES, class Load, class Commit, class WaitSync, class Compute>
RQ_HD void rq_pipeline(int kt0, int kt1, Load &load, Commit &commit, WaitSync &wait_sync, Compute &compute) {
  for (int p = 0; p < STAGES - 1; p++) {
    if (kt0 + p < kt1) load(kt0 + p, p);
    commit();
  }
  for (int kt = kt0; kt < kt1; kt++) {
    wait_sync();
    int nk = kt + STAGES - 1;
    if (nk < kt1) load(nk, (nk - kt0) % STAGES);
    commit();
    compute(kt, (kt - kt0) % STAGES);
  }
}

// ---- output rounding ----------------------------------------------------------------------------
// RNE to f16, subnormals kept, overflow to +-Inf: __float2half_rn on the device, the reference's
// integer implementation (resq_f32_to_f16) on the host.
RQ_HD uint16_t rq_f16_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(v));
#else
  return resq_f32_to_f16(v);
#endif
}

// ---- per-thread pieces of the kernel (the host emulator runs them for every thread) -------------
// Stage loads of thread tid for k-tile kt: cpa(dst, src) for its activation chunks, cpb(dst, woff)
// for its weight chunks; dst is the byte offset in the stage (A tile first, then B tile), woff the
// offset in the packed weight stream.
template <class C, class CpA, class CpB>
RQ_HD void rq_load_stage(const RqGemmPlan &P, int tid, int kt, int64_t m0, int64_t n0, CpA &cpa, CpB &cpb) {
  typedef RqGemmShape<C> S;
  RQ_UNROLL
  for (int it = 0; it < S::A_ITERS; it++) {
    int row, ch;
    if (!rq_chunk_of(tid, it, S::THREADS, C::BM, S::CH, &row, &ch)) continue;
    cpa(rq_swz(row, ch, S::CH), rq_a_src(P, m0 + row, (int64_t)kt * C::BK + ch * 16));
  }
  RQ_UNROLL
  for (int it = 0; it < S::B_ITERS; it++) {
    int row, ch;
    if (!rq_chunk_of(tid, it, S::THREADS, C::BN, S::CH, &row, &ch)) continue;
    cpb((uint32_t)S::A_BYTES + rq_swz(row, ch, S::CH), rq_w_offset(n0 + row, (int64_t)kt * C::BK + ch * 16, P.kblocks));
  }
}

// Split-K workspace access: integer atomics at L2 on the device (exact and order independent);
// plain wrapping adds in the sequential host emulation.
RQ_HD void rq_ws_add(int32_t *p, int32_t v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  *p = (int32_t)((uint32_t)*p + (uint32_t)v);
#endif
}
RQ_HD int32_t rq_ws_take(int32_t *p) {  // read the total and leave 0 for the next call
#if defined(__CUDA_ARCH__)
  int32_t v = __ldcg(p);
  __stcg(p, 0);
#else
  int32_t v = *p;
  *p = 0;
#endif
  return v;
}

// Segment end, no split: fold the thread's int32 sums into its fp32 outputs (K order).
template <class C>
RQ_HD void rq_fold_thread(const RqGemmPlan &P, int seg, int warp, int lane, int64_t m0, int64_t n0,
                          const int32_t (&acc)[RqGemmShape<C>::MI][RqGemmShape<C>::NJ][4],
                          float (&y)[RqGemmShape<C>::MI][RqGemmShape<C>::NJ][4]) {
  typedef RqGemmShape<C> S;
  float a[S::MI][2], w[S::NJ][2];
  int32_t z[S::MI][2], sum[S::NJ][2];
  RQ_UNROLL
  for (int i = 0; i < S::MI; i++)
    RQ_UNROLL
    for (int h = 0; h < 2; h++) {
      int row, col;
      rq_elem_pos<C>(warp, lane, i, 0, 2 * h, &row, &col);
      int64_t m = m0 + row < P.M ? m0 + row : P.M - 1;  // rows >= M are computed, never stored
      rq_seg_row(P, seg, m, &a[i][h], &z[i][h]);
    }
  RQ_UNROLL
  for (int j = 0; j < S::NJ; j++)
    RQ_UNROLL
    for (int e = 0; e < 2; e++) {
      int row, col;
      rq_elem_pos<C>(warp, lane, 0, j, e, &row, &col);
      rq_seg_col(P, seg, n0 + col, &w[j][e], &sum[j][e]);  // n < Np: padded columns exist
    }
  RQ_UNROLL
  for (int i = 0; i < S::MI; i++)
    RQ_UNROLL
    for (int j = 0; j < S::NJ; j++)
      RQ_UNROLL
      for (int e = 0; e < 4; e++)
        y[i][j][e] = rq_y_add(y[i][j][e], rq_seg_term(a[i][e >> 1], w[j][e & 1],
                                                      rq_seg_int(acc[i][j][e], z[i][e >> 1], sum[j][e & 1])));
}

// Segment (or range) end with split-K: add the thread's int32 sums to workspace plane seg.
template <class C>
RQ_HD void rq_publish_thread(const RqGemmPlan &P, int seg, int warp, int lane, int64_t m0, int64_t n0,
                             const int32_t (&acc)[RqGemmShape<C>::MI][RqGemmShape<C>::NJ][4]) {
  typedef RqGemmShape<C> S;
  RQ_UNROLL
  for (int i = 0; i < S::MI; i++)
    RQ_UNROLL
    for (int j = 0; j < S::NJ; j++)
      RQ_UNROLL
      for (int e = 0; e < 4; e++) {
        int row, col;
        rq_elem_pos<C>(warp, lane, i, j, e, &row, &col);
        int64_t m = m0 + row, n = n0 + col;
        if (m < P.M && n < P.N) rq_ws_add(&P.ws[((int64_t)seg * P.M + m) * P.Np + n], acc[i][j][e]);
      }
}

// Store two horizontally adjacent outputs (row m, columns n and n+1; n even): + bias (after every
// segment term, CONTRACT section 11), then fp32 or RNE f16.
RQ_HD void rq_store2(const RqGemmPlan &P, int64_t m, int64_t n, float v0, float v1) {
  if (m >= P.M || n >= P.N) return;
  const bool two = n + 1 < P.N;
  if (P.bias) {
    v0 = rq_y_add(v0, P.bias[n]);
    if (two) v1 = rq_y_add(v1, P.bias[n + 1]);
  }
  if (P.out_f32) {
    float *yp = (float *)P.y + m * P.ldy + n;
#if defined(__CUDA_ARCH__)
    if (two && P.vec_out) {
      *(float2 *)yp = make_float2(v0, v1);
      return;
    }
#endif
    yp[0] = v0;
    if (two) yp[1] = v1;
  } else {
    uint16_t *yp = (uint16_t *)P.y + m * P.ldy + n;
    const uint16_t h0 = rq_f16_bits(v0), h1 = two ? rq_f16_bits(v1) : 0;
#if defined(__CUDA_ARCH__)
    if (two && P.vec_out) {
      *(uint32_t *)yp = (uint32_t)h0 | ((uint32_t)h1 << 16);
      return;
    }
#endif
    yp[0] = h0;
    if (two) yp[1] = h1;
  }
}

template <class C>
RQ_HD void rq_store_thread(const RqGemmPlan &P, int warp, int lane, int64_t m0, int64_t n0,
                           const float (&y)[RqGemmShape<C>::MI][RqGemmShape<C>::NJ][4]) {
  typedef RqGemmShape<C> S;
  RQ_UNROLL
  for (int i = 0; i < S::MI; i++)
    RQ_UNROLL
    for (int j = 0; j < S::NJ; j++)
      RQ_UNROLL
      for (int h = 0; h < 2; h++) {
        int row, col;
        rq_elem_pos<C>(warp, lane, i, j, 2 * h, &row, &col);
        rq_store2(P, m0 + row, n0 + col, y[i][j][2 * h], y[i][j][2 * h + 1]);
      }
}

// The last split of a tile: fold every segment's total in K order, clear the workspace, store.
template <class C>
RQ_HD void rq_split_final_thread(const RqGemmPlan &P, int warp, int lane, int64_t m0, int64_t n0) {
  typedef RqGemmShape<C> S;
  RQ_UNROLL
  for (int i = 0; i < S::MI; i++)
    RQ_UNROLL
    for (int j = 0; j < S::NJ; j++)
      RQ_UNROLL
      for (int h = 0; h < 2; h++) {
        int row, col;
        rq_elem_pos<C>(warp, lane, i, j, 2 * h, &row, &col);
        const int64_t m = m0 + row, n = n0 + col;
        if (m >= P.M || n >= P.N) continue;
        float v[2] = {rq_y_start(), rq_y_start()};
        for (int e = 0; e < 2; e++) {
          if (n + e >= P.N) continue;
          for (int seg = 0; seg < P.nseg; seg++)
            v[e] = rq_y_add(v[e], rq_seg_fold(P, seg, m, n + e, rq_ws_take(&P.ws[((int64_t)seg * P.M + m) * P.Np + n + e])));
        }
        rq_store2(P, m, n, v[0], v[1]);
      }
}

// ---- host side: weight layout and launch plan (no CUDA calls; the host test uses them too) ----
// (plain host functions: nvcc parses them in the device pass too but compiles them for the host only)
#include "resq/cuda_gemm.h"
#include "resq/gemm.h"

static inline int64_t rq_align256(int64_t v) { return rq_round_up(v, 256); }

// Fill the layout fields of a packed weight descriptor for N rows of a validated split.
static inline void rq_wlayout(const resq_qact_params *p, const resq_qact_layout *L, int64_t N, resq_qweight_cuda *d) {
  d->N = N;
  d->K = p->K;
  d->group = p->group;
  d->r = p->r;
  d->bits_lo = p->bits_lo;
  d->bits_hi = p->bits_hi;
  d->Np = rq_round_up(N, RQ_W_NPAD);
  d->steps_lo = rq_ceil_div(L->lo_bytes, 32);
  d->steps_hi = rq_ceil_div(L->hi_bytes, 32);
  d->kblocks = rq_ceil_div((d->steps_lo + d->steps_hi) * 32, RQ_W_BBYTES);
  d->seg_lo = L->lo_per_group > 0 ? L->ngroups : 0;
  d->nseg = d->seg_lo + (p->r > 0 ? L->ngroups : 0);
  d->off_q = 0;
  d->off_scale_lo = (size_t)rq_align256(d->Np * d->kblocks * RQ_W_BBYTES);
  d->off_scale_hi = (size_t)rq_align256((int64_t)d->off_scale_lo + d->Np * 4);
  d->off_sum = (size_t)rq_align256((int64_t)d->off_scale_hi + d->Np * 4);
  int64_t end = (int64_t)d->off_sum + d->nseg * d->Np * 4;
  d->bytes = (size_t)rq_align256(end > 0 ? end : 1);
}

static inline int64_t rq_ws_plane_bytes(const resq_qweight_cuda *w, int64_t M) {
  return rq_align256(w->nseg * M * w->Np * 4);
}
// Counters: enough for the config with the most tiles (decode: 16 x 64).
static inline int64_t rq_ws_bytes(const resq_qweight_cuda *w, int64_t M) {
  int64_t tiles = rq_ceil_div(M, RqGemmDecode::BM) * rq_ceil_div(w->Np, RqGemmDecode::BN);
  return rq_ws_plane_bytes(w, M) + rq_align256(tiles * 4);
}

// Largest power of two <= 16 dividing v (v = 0: 16).
static inline int rq_pow2_align(uint64_t v) {
  int a = 16;
  while (a > 1 && (v % (uint64_t)a)) a >>= 1;
  return a;
}

// Automatic split-K: with fewer tiles than SMs, split the k-tiles until ~2 CTAs per SM, keeping
// >= 4 k-tiles per split (a split's fixed cost -- prologue, atomics -- must stay small).
static inline int rq_auto_splits(int64_t tiles, int ktiles, int sm_count) {
  if (sm_count <= 0 || tiles >= sm_count) return 1;
  int64_t want = rq_ceil_div(2 * (int64_t)sm_count, tiles);
  int64_t cap = ktiles / 4;
  if (cap > 32) cap = 32;
  if (want > cap) want = cap;
  return want < 1 ? 1 : (int)want;
}

// Build the launch plan (tile config *cfg = RqGemmDecode::ID or RqGemmPrefill::ID). Arguments must
// already be validated (resq_gemm_q4q8_*__cuda does it); opts may be NULL.
static inline resq_status rq_gemm_make_plan(const resq_qact_params *p, const resq_qact_layout *L, int64_t M,
                                            const resq_qact *x, const resq_qweight_cuda *w, const float *bias,
                                            void *y, int64_t ldy, int out_f32, const resq_gemm_cuda_opts *opts,
                                            int sm_count, int *cfg, RqGemmPlan *P) {
  RqGemmPlan q = {};
  resq_gemm_tile tile = opts ? opts->tile : RESQ_GEMM_TILE_AUTO;
  if (tile == RESQ_GEMM_TILE_AUTO) {
    // prefill tiles when there are more than 64 rows and they fill every SM; otherwise the
    // 16 x 64 decode tiles (with split-K when even those are too few)
    int64_t pre_tiles = rq_ceil_div(M, RqGemmPrefill::BM) * rq_ceil_div(w->N, RqGemmPrefill::BN);
    tile = (M > 64 && (sm_count <= 0 || pre_tiles >= sm_count)) ? RESQ_GEMM_TILE_PREFILL : RESQ_GEMM_TILE_DECODE;
  }
  if (tile != RESQ_GEMM_TILE_DECODE && tile != RESQ_GEMM_TILE_PREFILL)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm cuda: unknown tile configuration %d", (int)tile);
  const int dec = tile == RESQ_GEMM_TILE_DECODE;
  const int BM = dec ? (int)RqGemmDecode::BM : (int)RqGemmPrefill::BM;
  const int BN = dec ? (int)RqGemmDecode::BN : (int)RqGemmPrefill::BN;
  const int KT = dec ? (int)RqGemmShape<RqGemmDecode>::KT : (int)RqGemmShape<RqGemmPrefill>::KT;
  if (M > 0x7fffffffLL || w->N > 0x7fffffffLL)
    return resq_fail(RESQ_ERR_TOO_LARGE, "gemm cuda: M or N above 2^31 - 1");
  q.M = (int)M;
  q.N = (int)w->N;
  q.Np = (int)w->Np;
  q.G = (int)L->ngroups;
  q.lpg = (int)L->lo_per_group;
  q.r = (int)p->r;
  q.lo_bytes = (int)L->lo_bytes;
  q.hi_bytes = (int)L->hi_bytes;
  q.steps_lo = (int)w->steps_lo;
  q.steps_hi = (int)w->steps_hi;
  q.steps = q.steps_lo + q.steps_hi;
  q.seg_lo = (int)w->seg_lo;
  q.nseg = (int)w->nseg;
  q.kblocks = (int)w->kblocks;
  q.tiles_m = (int)rq_ceil_div(M, BM);
  q.tiles_n = (int)rq_ceil_div(w->N, BN);
  if ((int64_t)q.tiles_m * q.tiles_n > 0x7fffffffLL)
    return resq_fail(RESQ_ERR_TOO_LARGE, "gemm cuda: more than 2^31 - 1 output tiles");
  q.ktiles = (int)rq_ceil_div(q.steps, KT);
  const int64_t need = rq_ws_bytes(w, M);
  if (opts && opts->work && (uintptr_t)opts->work % 16)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm cuda: the split-K workspace must be 16-byte aligned");
  const int have_ws = opts && opts->work && opts->work_size >= (size_t)need;
  int splits = opts ? opts->splits : 0;
  if (splits < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm cuda: negative split count %d", splits);
  if (!dec && splits > 1)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm cuda: split-K (%d splits) is a decode-tile feature", splits);
  if (splits == 0) splits = (have_ws && dec) ? rq_auto_splits((int64_t)q.tiles_m * q.tiles_n, q.ktiles, sm_count) : 1;
  if (splits > q.ktiles) splits = q.ktiles > 0 ? q.ktiles : 1;
  if (splits > 65535) splits = 65535;
  if (splits > 1 && !have_ws)
    return resq_fail(RESQ_ERR_INVALID_ARG,
                     "gemm cuda: split-K (%d splits) needs a workspace of %lld bytes (got %p, %zu bytes)", splits,
                     (long long)need, opts ? opts->work : NULL, opts ? opts->work_size : (size_t)0);
  q.splits = splits;
  if (splits > 1) {
    q.ws = (int32_t *)opts->work;
    q.cnt = (unsigned int *)((char *)opts->work + rq_ws_plane_bytes(w, M));
  }
  // activation load granule: the alignment every chunk address shares (chunk offsets within a
  // row are multiples of 16; rows start at base + m*ld)
  int gran = 16;
  if (L->lo_per_group > 0) {
    int a = rq_pow2_align((uint64_t)(uintptr_t)x->q_lo);
    if (M > 1) a = a < rq_pow2_align((uint64_t)x->ld_lo) ? a : rq_pow2_align((uint64_t)x->ld_lo);
    gran = gran < a ? gran : a;
  }
  if (p->r > 0) {
    int a = rq_pow2_align((uint64_t)(uintptr_t)x->q_hi);
    if (M > 1) a = a < rq_pow2_align((uint64_t)x->ld_hi) ? a : rq_pow2_align((uint64_t)x->ld_hi);
    gran = gran < a ? gran : a;
  }
  q.gran = gran >= 4 ? gran : 1;
  q.out_f32 = out_f32;
  const int es = out_f32 ? 4 : 2;
  q.vec_out = rq_pow2_align((uint64_t)(uintptr_t)y) >= 2 * es && (M <= 1 || ldy % 2 == 0);
  q.ld_lo = x->ld_lo;
  q.ld_hi = x->ld_hi;
  q.ldy = ldy;
  q.xlo = x->q_lo;
  q.xhi = x->q_hi;
  q.xs_lo = x->scale_lo;
  q.xs_hi = x->scale_hi;
  q.xz_lo = x->zero_lo;
  q.xz_hi = x->zero_hi;
  q.wq = (const uint8_t *)w->data + w->off_q;
  q.ws_lo = (const float *)((const char *)w->data + w->off_scale_lo);
  q.ws_hi = (const float *)((const char *)w->data + w->off_scale_hi);
  q.wsum = (const int32_t *)((const char *)w->data + w->off_sum);
  q.bias = bias;
  q.y = y;
  *cfg = dec ? (int)RqGemmDecode::ID : (int)RqGemmPrefill::ID;
  *P = q;
  return RESQ_OK;
}

#endif
