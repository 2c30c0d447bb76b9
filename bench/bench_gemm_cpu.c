/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_gemm_cpu.c -- the ResQ mixed INT4/INT8 GEMM of the CPU backend
 * (resq_gemm_q4q8_f16__cpu, resq/cpu.h) at the linear-layer shapes of
 * bench/shapes/, Y[M,N] = X[M,K] W[N,K]^T with f16 output:
 *
 *   gemm_q4q8_f16__cpu/M/N/K          per token (group = K), r = K/8 hi columns:
 *                                     q/k/v, gate/up (measured at every shape)
 *   gemm_q4q8_grouped_f16__cpu/M/N/K  per (token, head): group = 128, r = 16: the
 *                                     o_proj input (shapes some model uses as o_proj)
 *   gemm_q4_f16__cpu/M/N/K            r = 0, pure INT4: the down_proj input
 *                                     (shapes some model uses as down_proj;
 *                                     quick mode: its first shape)
 *
 * Baselines (label): baseline= oneDNN's bf16 matmul of the same shape (the
 * 16-bit baseline), peer= oneDNN's u8 x s8 matmul (the W8A8 peer). When oneDNN
 * is found at configure time (RESQ_BENCH_ONEDNN), both are registered in THIS
 * process right before the ResQ GEMMs of the same (M, N, K)
 * (bench_gemm_baselines.c, bench_onednn.h), so every ratio is measured back to
 * back under the same host conditions (bandwidth on shared hosts moves 2-4x
 * within minutes).
 *
 * Threads: libgomp (oneDNN's OpenMP runtime) pins the main thread to one core
 * when the library is loaded with OMP_PROC_BIND set, and threads created later
 * inherit that mask, so the CPU backend's pool would run both its threads on
 * one core (the cpu-anchors pitfall). main() therefore widens the main
 * thread's mask to every online CPU before the first CPU-backend call, starts
 * the pool (workers keep the wide mask), and restores libgomp's mask; the
 * placement of every thread is recorded in the JSON context.
 *
 * Method (operands, byte counts and the bit-exact check: bench_qgemm_common.h):
 *   - The weight is packed once, offline, in the canonical layout
 *     (resq_gemm_pack_weight) and then in the CPU layout
 *     (resq_gemm_pack_weight__cpu); neither is timed.
 *   - Cold weights: byte copies of the packed block (a copy with its descriptor
 *     is a valid weight, resq/cpu.h) are rotated, one per call, so that the
 *     copies together are >= rb_cold_bytes() (max(256 MiB, 2 x LLC)).
 *   - Checked once before timing, bit for bit, against resq_gemm_q4q8_f16__ref
 *     on sampled rows x panels of the output computed with the LAST copy.
 *   - Counters: ops = 2 M N K; bytes = weights + activations + f16 output;
 *     wbytes = weights; probe_bw (M <= 16):
 *     a read probe over the same weight copies right after the timing;
 *     paired_vs_peer, paired_peer_q1/_q3/_n (M <= 16, with oneDNN): the
 *     speedup over the W8A8 peer from alternating pairs of blocks of
 *     calls (see paired_vs_peer below). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_qgemm_common.h"
#include "bench_util.h"
#include "resq/cpu.h"
#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"
#ifdef RESQ_BENCH_ONEDNN
#include "bench_onednn.h"
#endif
#include <unistd.h>

#define PROBE_MAX_M 16

static const char *const g_family[RB_NVAR] = {"gemm_q4q8_f16__cpu", "gemm_q4q8_grouped_f16__cpu", "gemm_q4_f16__cpu"};

/* The weight of the current (variant, N, K): canonical + CPU copies. */
typedef struct wstate {
  int valid;
  rb_qw q; /* canonical (for the reference check) */
  int ncopies;
  void **blocks;
  resq_qweight_cpu *wc;
} wstate;
static wstate g_w[RB_NVAR]; /* one cache per variant: the benchmarks of one shape interleave them */

static void wstate_drop(wstate *s) {
  rb_qw_free(&s->q);
  for (int i = 0; i < s->ncopies; i++) rb_free(s->blocks[i]);
  free(s->blocks);
  free(s->wc);
  memset(s, 0, sizeof *s);
}

static int wstate_make(wstate *s, int v, int64_t N, int64_t K, char *why, size_t whylen) {
  if (s->valid && s->q.v == v && s->q.N == N && s->q.K == K) return 0;
  wstate_drop(s);
  if (rb_qw_make(&s->q, v, N, K, g_family[v], why, whylen)) return -1;
  size_t bytes = 0;
  resq_status st;
  if ((st = resq_gemm_pack_weight_size__cpu(&s->q.p, N, &bytes)) != RESQ_OK) {
    snprintf(why, whylen, "resq_gemm_pack_weight_size__cpu: %s: %s", resq_status_name(st), resq_last_error());
    return -1;
  }
  int n = rb_copies_for(bytes);
  s->blocks = calloc((size_t)n, sizeof *s->blocks);
  s->wc = calloc((size_t)n, sizeof *s->wc);
  if (!s->blocks || !s->wc) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  for (int i = 0; i < n; i++) {
    s->blocks[i] = rb_alloc(bytes);
    if (!s->blocks[i]) {
      snprintf(why, whylen, "out of memory (%d copies of %zu bytes)", n, bytes);
      return -1;
    }
    s->ncopies = i + 1;
    if (i == 0) {
      if ((st = resq_gemm_pack_weight__cpu(&s->q.p, &s->q.w, s->blocks[0], bytes, &s->wc[0])) != RESQ_OK) {
        snprintf(why, whylen, "resq_gemm_pack_weight__cpu: %s: %s", resq_status_name(st), resq_last_error());
        return -1;
      }
    } else {
      memcpy(s->blocks[i], s->blocks[0], bytes);
      s->wc[i] = s->wc[0];
      s->wc[i].data = s->blocks[i];
    }
  }
  s->valid = 1;
  return 0;
}

#ifdef RESQ_BENCH_ONEDNN
/* The paired ratio against the W8A8 peer at decode sizes (M <= PROBE_MAX_M,
 * where both GEMMs stream their weights and the host's memory bandwidth, which
 * moves within seconds, sets both times): counter "paired_vs_peer" = the
 * median over n alternating pairs of blocks, t(oneDNN u8 x s8 call) / t(ResQ
 * call), each side's block being untimed calls for RB_PAIRED_PEER_WARM_S and
 * then timed calls for RB_PAIRED_PEER_BLOCK_S, every call on its next cold
 * weight copy (rb_pair_times, bench_util.h): the same orientation as
 * run_all's vs_peer (the two benchmarks' medians, seconds apart), with the
 * sides interleaved every ~25 ms instead. "paired_peer_q1" / "_q3" are the
 * quartiles, "paired_peer_n" = n. Why blocks and not single calls: the two
 * libraries' thread pools share the 2 cores, and a worker of one still
 * spinning after its call slows the other's next call (libgomp spins for
 * milliseconds by default, our pool 200 us). Measured on the Zen 4 guest
 * (quick set, M = 1, 4096 x 4096, three processes each): single-call pairs
 * gave the per-token GEMM 1.48-1.73x and the grouped one 0.98-1.00x against
 * 1.47-1.92x unpaired (and 2.11x with GOMP_SPINCOUNT=0); 5 + 20 ms blocks
 * 1.56-1.96x and 1.27-1.44x. In the full run of 2026-12-04 (ae93a3c) oneDNN
 * int8 read 51.6 GB/s at M = 1, N = 4096, K = 11008 while the probe right
 * after it read 32.6: the drift the pairs are meant to cancel. Measured once
 * per process and (variant, M, N, K), for the reason of rb_paired_vs_memcpy
 * (bench_stage_common.h); no counter when the peer cannot be built here. */
#define RB_PAIRED_PEER_WARM_S 0.005
#define RB_PAIRED_PEER_BLOCK_S 0.02
#define RB_PAIRED_PEER_S 0.6
typedef struct ours_side {
  wstate *W;
  const rb_qa *a;
  uint16_t *y;
  int64_t M, N;
  int next;
} ours_side;
static int side_ours(void *ctx) {
  ours_side *o = (ours_side *)ctx;
  const int i = o->next;
  if (++o->next == o->W->ncopies) o->next = 0;
  return resq_gemm_q4q8_f16__cpu(&o->W->q.p, o->M, &o->a->x, &o->W->wc[i], NULL, o->y, o->N) != RESQ_OK;
}
static int side_peer(void *ctx) { return rb_onednn_int8_call((rb_onednn_mm *)ctx) != 0; }
static void paired_vs_peer(resq_bench_state *st, int v, int64_t M, int64_t N, int64_t K, wstate *W, const rb_qa *a,
                           uint16_t *y) {
  static struct {
    int v;
    int64_t M, N, K;
    rb_pair_stats ps;
  } done[256];
  static int ndone;
  int slot = -1;
  for (int i = 0; i < ndone; i++)
    if (done[i].v == v && done[i].M == M && done[i].N == N && done[i].K == K) slot = i;
  if (slot < 0) {
    char why[512];
    rb_onednn_mm *mm =
        ndone < (int)(sizeof done / sizeof done[0]) ? rb_onednn_int8_open(M, N, K, why, sizeof why) : NULL;
    if (!mm) return; /* no counter: run_all leaves the column empty */
    ours_side o = {W, a, y, M, N, 0};
    int bad = 0;
    const int n = rb_pair_times(side_peer, mm, side_ours, &o, RB_PAIRED_PEER_WARM_S, RB_PAIRED_PEER_BLOCK_S,
                                RB_PAIRED_PEER_S, 5, 101, &done[ndone].ps, &bad);
    rb_onednn_int8_close(mm);
    if (n < 0) {
      resq_bench_error(st, "paired_vs_peer: a oneDNN or ResQ call failed during the pairs (status %d; both passed "
                           "their checks before): %s",
                       bad, resq_last_error());
      return;
    }
    slot = ndone++;
    done[slot].v = v, done[slot].M = M, done[slot].N = N, done[slot].K = K;
  }
  resq_bench_counter(st, "paired_vs_peer", done[slot].ps.med, RESQ_CTR_PLAIN);
  resq_bench_counter(st, "paired_peer_q1", done[slot].ps.q1, RESQ_CTR_PLAIN);
  resq_bench_counter(st, "paired_peer_q3", done[slot].ps.q3, RESQ_CTR_PLAIN);
  resq_bench_counter(st, "paired_peer_n", (double)done[slot].ps.n, RESQ_CTR_PLAIN);
}
#endif

static void bm_gemm_cpu(resq_bench_state *st, const void *params) {
  const int v = *(const int *)params;
  const int64_t M = resq_bench_arg(st, 0), N = resq_bench_arg(st, 1), K = resq_bench_arg(st, 2);
  char why[768] = "";
  rb_qa a;
  uint16_t *y = NULL;
  memset(&a, 0, sizeof a);
  wstate *const W = &g_w[v];
  if (wstate_make(W, v, N, K, why, sizeof why)) goto fail;
  if (rb_qa_make(&a, &W->q.p, &W->q.L, M)) {
    snprintf(why, sizeof why, "out of memory (activations)");
    goto fail;
  }
  y = rb_alloc((size_t)(M * N) * 2);
  if (!y) {
    snprintf(why, sizeof why, "out of memory (output)");
    goto fail;
  }
  memset(y, 0xff, (size_t)(M * N) * 2); /* f16 NaN: an unwritten output fails the check */
  {
    resq_status s = resq_gemm_q4q8_f16__cpu(&W->q.p, M, &a.x, &W->wc[W->ncopies - 1], NULL, y, N);
    if (s != RESQ_OK) {
      snprintf(why, sizeof why, "resq_gemm_q4q8_f16__cpu: %s: %s", resq_status_name(s), resq_last_error());
      goto fail;
    }
    if (rb_qcheck(&W->q, &a, M, y, g_family[v], "bench_gemm_cpu", why, sizeof why)) goto fail;
  }
  {
    int i = 0;
    while (resq_bench_keep_running(st, 1)) {
      resq_gemm_q4q8_f16__cpu(&W->q.p, M, &a.x, &W->wc[i], NULL, y, N);
      if (++i == W->ncopies) i = 0;
    }
  }
  resq_bench_counter(st, "ops", 2.0 * (double)M * (double)N * (double)K, RESQ_CTR_RATE);
  resq_bench_counter(st, "bytes", W->q.wbytes + a.bytes + 2.0 * (double)(M * N), RESQ_CTR_RATE);
  resq_bench_counter(st, "wbytes", W->q.wbytes, RESQ_CTR_RATE);
  resq_bench_counter(st, "check_relerr", 0.0, RESQ_CTR_PLAIN); /* bit-exact */
  if (M <= PROBE_MAX_M) {
    void **bufs = calloc((size_t)W->ncopies, sizeof *bufs);
    size_t *sizes = calloc((size_t)W->ncopies, sizeof *sizes);
    if (bufs && sizes) {
      for (int i = 0; i < W->ncopies; i++) {
        bufs[i] = W->blocks[i];
        sizes[i] = W->wc[i].bytes;
      }
      resq_bench_counter(st, "probe_bw", rb_read_probe(bufs, sizes, W->ncopies, resq_cpu_get_threads(), 3),
                         RESQ_CTR_PLAIN);
    }
    free(bufs);
    free(sizes);
#ifdef RESQ_BENCH_ONEDNN
    paired_vs_peer(st, v, M, N, K, W, &a, y);
#endif
  }
  resq_bench_label(st,
                   "baseline=gemm_bf16_f32__onednn/M:%lld/N:%lld/K:%lld;peer=gemm_u8s8_f32__onednn/M:%lld/N:%lld/"
                   "K:%lld;roof=machine_peak_dpbusd;impl=resq-cpu-%s-%dt group=%lld r=%lld;copies=%d",
                   (long long)M, (long long)N, (long long)K, (long long)M, (long long)N, (long long)K,
                   resq_cpu_isa_name(resq_cpu_get_isa()), resq_cpu_get_threads(), (long long)W->q.p.group,
                   (long long)W->q.p.r, W->ncopies);
  goto done;
fail:
  if (strncmp(why, RESQ_BENCH_SKIP_PREFIX, strlen(RESQ_BENCH_SKIP_PREFIX)) == 0)
    resq_bench_skip(st, "%s", why + strlen(RESQ_BENCH_SKIP_PREFIX));
  else
    resq_bench_error(st, "%s", why);
done:
  rb_qa_free(&a);
  rb_free(y);
}

/* See the header: start the CPU backend's pool with every online CPU allowed. */
static void start_pool_unpinned(void) {
  cpu_set_t old, all;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int have_old = sched_getaffinity(0, sizeof old, &old) == 0;
  CPU_ZERO(&all);
  for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++) CPU_SET((int)i, &all);
  (void)sched_setaffinity(0, sizeof all, &all); /* 0: the calling thread */
  /* the first call reads the affinity (default thread count) and starts the workers */
  wstate w;
  rb_qa a;
  uint16_t y[64 * 4];
  char why[256];
  memset(&w, 0, sizeof w);
  memset(&a, 0, sizeof a);
  if (wstate_make(&w, RB_V_TOKEN, 64, 64, why, sizeof why) == 0 && rb_qa_make(&a, &w.q.p, &w.q.L, 4) == 0)
    (void)resq_gemm_q4q8_f16__cpu(&w.q.p, 4, &a.x, &w.wc[0], NULL, y, 64);
  rb_qa_free(&a);
  wstate_drop(&w);
  if (have_old) (void)sched_setaffinity(0, sizeof old, &old);
}

int main(int argc, char **argv) {
  rb_shapes sh;
  char buf[4096];
  static const char *const names[] = {"M", "N", "K"};
  static const int vars[RB_NVAR] = {RB_V_TOKEN, RB_V_GROUPED, RB_V_INT4};
  start_pool_unpinned(); /* before anything else touches the CPU backend */
  if (rb_shapes_load(&sh) != 0) return 1;
  rb_context_common();
  for (int s = 0; s < sh.nshapes; s++) {
    char key[64];
    snprintf(key, sizeof key, "resq_layers_N%lld_K%lld", (long long)sh.shape[s].N, (long long)sh.shape[s].K);
    resq_bench_context(key, sh.shape[s].layers);
  }
  resq_bench_context("resq_cpu_isa", resq_cpu_isa_name(resq_cpu_get_isa()));
  snprintf(buf, sizeof buf, "%d", resq_cpu_get_threads());
  resq_bench_context("resq_cpu_threads", buf);
#ifdef RESQ_BENCH_ONEDNN
  if (rb_onednn_init() != 0) return 1; /* records resq_placement after starting OpenMP */
  resq_bench_context("resq_gemm_baselines", "oneDNN bf16 and u8s8 in this process, back to back per (M, N, K)");
#else
  resq_bench_context("resq_gemm_baselines", "none in this process (oneDNN not found at configure time)");
#endif
  rb_thread_placement(buf, sizeof buf);
  resq_bench_context("resq_placement_cpu_pool", buf);
  fprintf(stderr, "bench_gemm_cpu: resq CPU backend, ISA %s, %d threads; threads: %s\n",
          resq_cpu_isa_name(resq_cpu_get_isa()), resq_cpu_get_threads(), buf);
  /* shape by shape (weights are made once per shape and variant), M ascending;
   * at each (M, N, K): the baselines, then the ResQ variants */
  for (int s = 0; s < sh.nshapes; s++) {
    const char *layers = sh.shape[s].layers;
    for (int t = 0; t < sh.ntokens; t++) {
      const int64_t M = sh.tokens[t], N = sh.shape[s].N, K = sh.shape[s].K;
#ifdef RESQ_BENCH_ONEDNN
      rb_onednn_register(M, N, K);
#endif
      for (int vi = 0; vi < RB_NVAR; vi++) {
        if (vars[vi] == RB_V_GROUPED && !strstr(layers, "o_proj")) continue;
        /* quick mode has no down_proj shape: INT4 on its first shape, so every variant runs */
        if (vars[vi] == RB_V_INT4 && !strstr(layers, "down_proj") && !(rb_quick() && s == 0)) continue;
        int64_t a[3] = {M, N, K};
        resq_bench_register_args(g_family[vars[vi]], bm_gemm_cpu, &vars[vi], sizeof vars[vi], RESQ_BENCH_REAL_TIME,
                                 names, a, 3);
      }
    }
  }
  int rc = resq_bench_main(argc, argv);
  for (int v = 0; v < RB_NVAR; v++) wstate_drop(&g_w[v]);
#ifdef RESQ_BENCH_ONEDNN
  rb_onednn_fini();
#endif
  return rc;
}
