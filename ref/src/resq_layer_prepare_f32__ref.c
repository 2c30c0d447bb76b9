/* SPDX-License-Identifier: Apache-2.0
 * The reference preparation pipeline (resq/layer_prepare.h, ref/CONTRACT.md
 * section 14): FP16 weights + calibration sequences -> a prepared layer for
 * resq_layer_q4q8_forward__ref, for ResQ, QuaRot-style and RTN.
 *
 * Phases, in this order (each is specified in the contract):
 *   0. validation of everything (sizes, splits, Hadamard sizes, NaN/Inf in
 *      weights, gammas, calibration) before anything is computed
 *   1. gamma folding into fp32 copies: W[n][j] * gamma[j], one fp32 multiply
 *      (q/k/v with ln1, gate/up with ln2)
 *   2. bases: ResQ -- the fp32 form of the folded layer on every calibration
 *      sequence feeds the PCA accumulators (attn + mlp RMSNorm outputs into
 *      one, v per KV head, post-RoPE k of all KV heads into one); U_A, U_B[g],
 *      U_C; one resq_rng(seed) draws R1_lo, R1_hi, R2_lo, R2_hi in that order
 *      (upstream's draw order); U = U_A R1, U_v[g] = U_B[g] R2, U_k = U_C R2,
 *      K8 = k8(U_k).  QuaRot -- one resq_rng(seed) draws d signs s1 then hd
 *      signs s2 (s = (u64 >> 63) ? -1 : +1); U = diag(s1) H_d^T,
 *      U_v[g] = diag(s2) H_hd^T, the online q/k rotation is fp32(H_hd^T).
 *      RTN -- none.
 *   3. fusion (section 13) in place: q, k, v, gate, up input side with U;
 *      v rows per KV head with U_v; o columns per head with U_v, then its
 *      output side with U; down: output side with U, then H_I on its input
 *      side (ResQ, QuaRot; RTN: nothing)
 *   4. GPTQ only: the fp32 form of the fused layer (online Hadamard on, no
 *      q/k rotation, as upstream's GPTQ runs before the K rotation exists) on
 *      every calibration sequence h U gives the inputs of each linear layer:
 *      one add_batch (B = 1) per sequence into the Hessians of q/k/v (shared),
 *      o (columns permuted), gate/up (shared) and down
 *   5. weights: o_proj's columns permuted (resq_oproj_column_order); each
 *      weight quantized by GPTQ or RTN with the mixed quantizer (last r
 *      columns 8-bit), r = 0 for down_proj unless int8_down_proj
 *   6. packing (section 11) and the activation-quantizer splits.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "layer_internal.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/gptq.h"
#include "resq/hadamard.h"
#include "resq/layer_prepare.h"
#include "resq/pca.h"

/* ------------------------------------------------------------------ parameters */

resq_layer_prepare_params resq_layer_prepare_default(resq_layer_method method) {
  resq_layer_prepare_params p;
  memset(&p, 0, sizeof p);
  p.method = method;
  p.wquant = method == RESQ_LAYER_RTN ? RESQ_WQUANT_RTN : RESQ_WQUANT_GPTQ;
  p.seed = 0;
  p.high_fraction = 0.125;
  p.int8_down_proj = 0;
  p.w_clip = 1;
  p.pca_damp = RESQ_PCA_DAMP_DEFAULT;
  p.percdamp = RESQ_GPTQ_PERCDAMP_DEFAULT;
  return p;
}

static const char *const k_method_names[] = {"resq", "quarot", "rtn"};

const char *resq_layer_method_name(resq_layer_method m) {
  return (unsigned)m < 3u ? k_method_names[m] : NULL;
}

resq_status resq_layer_method_from_name(const char *name, resq_layer_method *m) {
  for (int i = 0; i < 3; i++)
    if (name && strcmp(name, k_method_names[i]) == 0) {
      if (m) *m = (resq_layer_method)i;
      return RESQ_OK;
    }
  return resq_fail(RESQ_ERR_INVALID_ARG, "layer: unknown method '%s' (resq, quarot, rtn)", name ? name : "(null)");
}

resq_status resq_layer_prepare_check(const resq_layer_prepare_params *p) {
  if (!p) return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: NULL parameters");
  if ((unsigned)p->method > 2u) return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: bad method %d", (int)p->method);
  if ((unsigned)p->wquant > 1u) return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: bad wquant %d", (int)p->wquant);
  if (!(p->high_fraction >= 0.0 && p->high_fraction <= 1.0))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: high_fraction must be in [0, 1]");
  if (!(p->pca_damp >= 0.0) || !isfinite(p->pca_damp) || !(p->percdamp >= 0.0) || !isfinite(p->percdamp))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: dampings must be finite and >= 0");
  if ((p->int8_down_proj != 0 && p->int8_down_proj != 1) || (p->w_clip != 0 && p->w_clip != 1))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: int8_down_proj and w_clip are 0 or 1");
  return RESQ_OK;
}

/* ------------------------------------------------------------------ owned memory */

typedef struct ownset {
  size_t n, cap;
  void **p;
} ownset;

static void *own(ownset *o, size_t bytes) {
  if (o->n == o->cap) {
    size_t nc = o->cap ? 2 * o->cap : 64;
    void **np = (void **)realloc(o->p, nc * sizeof(void *));
    if (!np) return NULL;
    o->p = np, o->cap = nc;
  }
  void *m = calloc(1, bytes ? bytes : 1);
  if (m) o->p[o->n++] = m;
  return m;
}

static void own_free(ownset *o) {
  if (!o) return;
  for (size_t i = 0; i < o->n; i++) free(o->p[i]);
  free(o->p);
  memset(o, 0, sizeof *o);
}

void resq_layer_prepared_free(resq_layer_prepared *P) {
  if (!P) return;
  if (P->mem_) {
    own_free((ownset *)P->mem_);
    free(P->mem_);
  }
  memset(P, 0, sizeof *P);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------------ validation */

static resq_status scan_f16(const char *what, const uint16_t *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if ((x[i] & 0x7c00u) == 0x7c00u)
      return resq_fail(RESQ_ERR_NONFINITE, "layer prepare: %s[%lld] is NaN or Inf", what, (long long)i);
  return RESQ_OK;
}

static resq_status scan_f32(const char *what, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return resq_fail(RESQ_ERR_NONFINITE, "layer prepare: %s[%lld] is NaN or Inf", what, (long long)i);
  return RESQ_OK;
}

/* The seven weights in the order of RESQ_LW_*: rows, cols, fp16 source. */
typedef struct {
  const char *name;
  int64_t N, K;
  const uint16_t *w16;
} wdesc;

/* ------------------------------------------------------------------ bases */

/* Hadamard matrix entry as used by h' = h U with U[i][j] = s_i H_n[j][i]. */
static void hadamard_basis(int64_t n, const int8_t *s, double *U) {
  const double inv = 1.0 / sqrt((double)n);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) U[i * n + j] = (double)(s ? s[i] : 1) * (double)resq_hadamard_entry(n, j, i) * inv;
}

/* R = blockdiag(R_lo (n - r), R_hi (r)) drawn from *rng (lo first). */
static resq_status draw_blockdiag(resq_rng *rng, int64_t n, int64_t r, double *R, void *work, size_t ws) {
  memset(R, 0, sizeof(double) * (size_t)(n * n));
  resq_status st = RESQ_OK;
  if (n - r > 0) st = resq_random_orthogonal_rng_f64__ref(rng, n - r, R, n, work, ws);
  if (!st && r > 0) st = resq_random_orthogonal_rng_f64__ref(rng, r, R + (n - r) * n + (n - r), n, work, ws);
  return st;
}

/* ------------------------------------------------------------------ the pipeline */

resq_status resq_layer_prepare_f32__ref(const resq_layer_config *c, const resq_layer_fp16 *w, int64_t nseq,
                                        int64_t T, const uint16_t *calib, const resq_layer_prepare_params *pp,
                                        resq_layer_prepared *out) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (!w || !out) return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: NULL weights or output");
  if ((st = resq_layer_prepare_check(pp))) return st;
  const resq_layer_prepare_params p = *pp;
  const int64_t d = c->d, H = c->H, G = c->G, hd = c->hd, qd = H * hd, kd = G * hd, I = c->I;
  const int resq = p.method == RESQ_LAYER_RESQ, quarot = p.method == RESQ_LAYER_QUAROT, rtn = p.method == RESQ_LAYER_RTN;
  const int gptq = !rtn && p.wquant == RESQ_WQUANT_GPTQ;
  const int need_calib = resq || gptq;
  const int64_t r = resq ? (int64_t)(p.high_fraction * (double)d) : 0;
  const int64_t r_h = resq ? (int64_t)(p.high_fraction * (double)hd) : 0;
  const int64_t r_down = p.int8_down_proj ? I : 0;

  /* ---- 0. validation */
  if (!w->wq || !w->wk || !w->wv || !w->wo || !w->wg || !w->wu || !w->wd || !w->ln1 || !w->ln2)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: a weight or gamma is NULL");
  if (need_calib) {
    if (nseq < 1 || T < 1)
      return resq_fail(RESQ_ERR_DEGENERATE, "layer prepare: %s needs calibration sequences (got %lld x %lld tokens)",
                       resq ? "ResQ" : "GPTQ", (long long)nseq, (long long)T);
    if (!calib) return resq_fail(RESQ_ERR_INVALID_ARG, "layer prepare: NULL calibration data");
    if (nseq > INT64_MAX / T / d) return resq_fail(RESQ_ERR_TOO_LARGE, "layer prepare: calibration size overflows");
  }
  if (!rtn && (st = resq_hadamard_factor(I, NULL, NULL))) return st;
  if (quarot && ((st = resq_hadamard_factor(d, NULL, NULL)) || (st = resq_hadamard_factor(hd, NULL, NULL)))) return st;
  if (!rtn && (d > RESQ_PCA_MAX_D || I > RESQ_PCA_MAX_D))
    return resq_fail(RESQ_ERR_TOO_LARGE, "layer prepare: d=%lld or I=%lld beyond the fusion limit %lld", (long long)d,
                     (long long)I, (long long)RESQ_PCA_MAX_D);
  if (gptq && (I > RESQ_GPTQ_MAX_K || qd > RESQ_GPTQ_MAX_K || d > RESQ_GPTQ_MAX_K))
    return resq_fail(RESQ_ERR_TOO_LARGE, "layer prepare: a GPTQ input size exceeds %lld", (long long)RESQ_GPTQ_MAX_K);
  /* the activation splits and GEMM splits (also checks the int32 limits) */
  resq_qact_params s_qkv = resq_qact_default(d), s_o = resq_qact_default(qd), s_gu = resq_qact_default(d);
  resq_qact_params s_down = resq_qact_default(I), s_kv = resq_qact_default(kd), s_qk8 = resq_qact_default(hd);
  s_qkv.r = r, s_gu.r = r;
  s_o.group = hd, s_o.r = r_h;
  s_down.r = r_down;
  s_kv.group = hd, s_kv.r = r_h;
  s_qk8.r = hd;
  resq_qact_layout lay[4];
  if ((st = resq_gemm_check(&s_qkv, &lay[0])) || (st = resq_gemm_check(&s_o, &lay[1])) ||
      (st = resq_gemm_check(&s_gu, &lay[2])) || (st = resq_gemm_check(&s_down, &lay[3])) ||
      (st = resq_qact_check(&s_kv, NULL)) || (st = resq_qact_check(&s_qk8, NULL)))
    return st;
  const wdesc W[RESQ_LW_COUNT] = {{"wq", qd, d, w->wq}, {"wk", kd, d, w->wk}, {"wv", kd, d, w->wv},
                                  {"wo", d, qd, w->wo}, {"wg", I, d, w->wg},  {"wu", I, d, w->wu},
                                  {"wd", d, I, w->wd}};
  for (int i = 0; i < RESQ_LW_COUNT; i++)
    if ((st = scan_f16(W[i].name, W[i].w16, W[i].N * W[i].K))) return st;
  if ((st = scan_f32("ln1", w->ln1, d)) || (st = scan_f32("ln2", w->ln2, d))) return st;
  if (need_calib && (st = scan_f16("calib", calib, nseq * T * d))) return st;

  ownset *om = (ownset *)calloc(1, sizeof(ownset));
  ownset tmp = {0, 0, NULL};
  if (!om) return resq_fail(RESQ_ERR_NOMEM, "layer prepare: out of memory");
  resq_layer_prepared P;
  memset(&P, 0, sizeof P);
  resq_pca_accum accA, accK, *accV = NULL;
  memset(&accA, 0, sizeof accA), memset(&accK, 0, sizeof accK);
  resq_gptq_hessian hs[4];
  memset(hs, 0, sizeof hs);
#define OWN(type, n) ((type *)own(om, sizeof(type) * (size_t)(n)))
#define TMP(type, n) ((type *)own(&tmp, sizeof(type) * (size_t)(n)))
#define NOMEM_IF(cond)                                                          \
  do {                                                                         \
    if (cond) {                                                                \
      st = resq_fail(RESQ_ERR_NOMEM, "layer prepare: out of memory (d=%lld, I=%lld)", (long long)d, (long long)I); \
      goto fail;                                                               \
    }                                                                          \
  } while (0)
  double t0 = now_s();

  /* ---- 1. gamma folding into fp32 copies */
  float *wf[RESQ_LW_COUNT];
  for (int i = 0; i < RESQ_LW_COUNT; i++) NOMEM_IF(!(wf[i] = OWN(float, W[i].N * W[i].K)));
  for (int i = 0; i < RESQ_LW_COUNT; i++) {
    const float *gam = (i <= RESQ_LW_V) ? w->ln1 : (i == RESQ_LW_GATE || i == RESQ_LW_UP) ? w->ln2 : NULL;
    for (int64_t n = 0; n < W[i].N; n++)
      for (int64_t k = 0; k < W[i].K; k++) {
        float v = resq_f16_to_f32(W[i].w16[n * W[i].K + k]);
        wf[i][n * W[i].K + k] = gam ? v * gam[k] : v;
      }
  }

  /* ---- 2. bases */
  double *U = NULL, *Uv = NULL, *Uk = NULL, *eig = NULL;
  float *k8 = NULL;
  const size_t fws = resq_fuse_workspace_size(d > hd ? d : hd);
  void *fwork = TMP(char, fws);
  NOMEM_IF(!fwork);
  int64_t calib_tokens = 0;
  if (resq) {
    NOMEM_IF(!(U = OWN(double, d * d)) || !(Uv = OWN(double, G * hd * hd)) || !(Uk = OWN(double, hd * hd)) ||
             !(eig = OWN(double, d)) || !(k8 = OWN(float, hd * hd)));
    accV = (resq_pca_accum *)calloc((size_t)G, sizeof(resq_pca_accum));
    NOMEM_IF(!accV);
    if ((st = resq_pca_accum_init(&accA, d)) || (st = resq_pca_accum_init(&accK, hd))) goto fail;
    for (int64_t g = 0; g < G; g++)
      if ((st = resq_pca_accum_init(&accV[g], hd))) goto fail;
    const resq_layer_f32 orig = {wf[0], wf[1], wf[2], wf[3], wf[4], wf[5], wf[6], NULL, NULL, 0};
    size_t ws = resq_layer_f32_workspace_size(c, T);
    void *work = malloc(ws);
    float *x = (float *)malloc(sizeof(float) * (size_t)(T * d)), *aa = (float *)malloc(sizeof(float) * (size_t)(T * d));
    float *am = (float *)malloc(sizeof(float) * (size_t)(T * d)), *kk = (float *)malloc(sizeof(float) * (size_t)(T * kd));
    float *vv = (float *)malloc(sizeof(float) * (size_t)(T * kd));
    if (!work || !x || !aa || !am || !kk || !vv) {
      free(work), free(x), free(aa), free(am), free(kk), free(vv);
      NOMEM_IF(1);
    }
    resq_layer_taps tp = {0};
    tp.a_attn = aa, tp.a_mlp = am, tp.k = kk, tp.v = vv;
    for (int64_t s = 0; s < nseq && !st; s++) {
      resq_f16_to_f32_n(calib + s * T * d, x, (size_t)(T * d));
      st = resq_layer_f32_forward__ref(c, &orig, T, x, x, &tp, work, ws);
      /* U_A: this sequence's attention inputs, then its MLP inputs */
      if (!st) st = resq_pca_accum_f32__ref(&accA, T, aa, d);
      if (!st) st = resq_pca_accum_f32__ref(&accA, T, am, d);
      for (int64_t g = 0; g < G && !st; g++) st = resq_pca_accum_f32__ref(&accV[g], T, vv + g * hd, kd);
      for (int64_t g = 0; g < G && !st; g++) st = resq_pca_accum_f32__ref(&accK, T, kk + g * hd, kd);
    }
    free(work), free(x), free(aa), free(am), free(kk), free(vv);
    if (st) goto fail;
    calib_tokens = nseq * T;
    /* eigenbases */
    size_t bws = resq_pca_basis_workspace_size(d), rws = resq_random_orthogonal_workspace_size(d);
    void *bwork = malloc(bws > rws ? bws : rws);
    double *Ua = (double *)malloc(sizeof(double) * (size_t)(d * d)), *R1 = (double *)malloc(sizeof(double) * (size_t)(d * d));
    double *Ub = (double *)malloc(sizeof(double) * (size_t)(hd * hd)), *R2 = (double *)malloc(sizeof(double) * (size_t)(hd * hd));
    double *ev = (double *)malloc(sizeof(double) * (size_t)hd);
    if (!bwork || !Ua || !R1 || !Ub || !R2 || !ev) {
      free(bwork), free(Ua), free(R1), free(Ub), free(R2), free(ev);
      NOMEM_IF(1);
    }
    size_t bw = bws > rws ? bws : rws;
    resq_rng rng;
    resq_rng_init(&rng, p.seed);
    st = resq_pca_basis_f64__ref(&accA, p.pca_damp, eig, Ua, d, bwork, bw);
    if (!st) st = draw_blockdiag(&rng, d, r, R1, bwork, bw);
    if (!st) st = draw_blockdiag(&rng, hd, r_h, R2, bwork, bw);
    if (!st) st = resq_pca_apply_blockdiag_f64__ref(d, r, Ua, d, R1, d, U, d);
    for (int64_t g = 0; g < G && !st; g++) {
      st = resq_pca_basis_f64__ref(&accV[g], p.pca_damp, ev, Ub, hd, bwork, bw);
      if (!st) st = resq_pca_apply_blockdiag_f64__ref(hd, r_h, Ub, hd, R2, hd, Uv + g * hd * hd, hd);
    }
    if (!st) st = resq_pca_basis_f64__ref(&accK, p.pca_damp, ev, Ub, hd, bwork, bw);
    if (!st) st = resq_pca_apply_blockdiag_f64__ref(hd, r_h, Ub, hd, R2, hd, Uk, hd);
    if (!st) st = resq_k8_f64__ref(hd, Uk, hd, NULL, NULL, k8);
    free(bwork), free(Ua), free(R1), free(Ub), free(R2), free(ev);
    if (st) goto fail;
  } else if (quarot) {
    NOMEM_IF(!(U = OWN(double, d * d)) || !(Uv = OWN(double, G * hd * hd)) || !(k8 = OWN(float, hd * hd)));
    int8_t *s1 = TMP(int8_t, d), *s2 = TMP(int8_t, hd);
    NOMEM_IF(!s1 || !s2);
    resq_rng rng;
    resq_rng_init(&rng, p.seed);
    for (int64_t i = 0; i < d; i++) s1[i] = (resq_rng_u64(&rng) >> 63) ? -1 : 1;
    for (int64_t i = 0; i < hd; i++) s2[i] = (resq_rng_u64(&rng) >> 63) ? -1 : 1;
    hadamard_basis(d, s1, U);
    hadamard_basis(hd, s2, Uv);
    for (int64_t g = 1; g < G; g++) memcpy(Uv + g * hd * hd, Uv, sizeof(double) * (size_t)(hd * hd));
    /* k8[i][j] = H_hd[j][i]: k . k8 is the transform k H_hd^T of section 2 */
    for (int64_t i = 0; i < hd; i++)
      for (int64_t j = 0; j < hd; j++) k8[i * hd + j] = (float)((double)resq_hadamard_entry(hd, j, i) / sqrt((double)hd));
  }
  double t1 = now_s();

  /* ---- 3. fusion (in place) */
  if (!rtn) {
    size_t hws = resq_hadamard_workspace_size(I);
    void *hwork = TMP(char, hws);
    NOMEM_IF(!hwork);
    if ((st = resq_fuse_input_f32__ref(qd, d, wf[0], d, U, d, wf[0], d, fwork, fws)) ||
        (st = resq_fuse_input_f32__ref(kd, d, wf[1], d, U, d, wf[1], d, fwork, fws)) ||
        (st = resq_fuse_input_f32__ref(kd, d, wf[2], d, U, d, wf[2], d, fwork, fws)) ||
        (st = resq_fuse_v_proj_f32__ref(G, hd, d, wf[2], d, Uv, wf[2], d, fwork, fws)) ||
        (st = resq_fuse_o_proj_f32__ref(d, H, G, hd, wf[3], qd, Uv, wf[3], qd, fwork, fws)) ||
        (st = resq_fuse_output_f32__ref(d, qd, wf[3], qd, U, d, wf[3], qd, fwork, fws)) ||
        (st = resq_fuse_input_f32__ref(I, d, wf[4], d, U, d, wf[4], d, fwork, fws)) ||
        (st = resq_fuse_input_f32__ref(I, d, wf[5], d, U, d, wf[5], d, fwork, fws)) ||
        (st = resq_fuse_down_proj_f32__ref(d, I, wf[6], I, U, d, NULL, wf[6], I, fwork, fws, hwork, hws)))
      goto fail;
  }
  const resq_layer_f32 rot = {wf[0], wf[1], wf[2], wf[3], wf[4], wf[5], wf[6], NULL, NULL, !rtn};

  /* ---- 5a. o_proj column order and the permuted copy */
  int32_t *order = OWN(int32_t, qd);
  float *wo_perm = TMP(float, d * qd);
  NOMEM_IF(!order || !wo_perm);
  if ((st = resq_oproj_column_order(H, hd, r_h, order))) goto fail;
  for (int64_t n = 0; n < d; n++)
    for (int64_t j = 0; j < qd; j++) wo_perm[n * qd + j] = wf[3][n * qd + order[j]];

  /* ---- 4. Hessians of the rotated, unquantized model */
  resq_gptq_hessian *hw_of[RESQ_LW_COUNT] = {0};
  if (gptq) {
    const int64_t hK[4] = {d, qd, d, I};
    for (int i = 0; i < 4; i++)
      if ((st = resq_gptq_hessian_init(&hs[i], hK[i]))) goto fail;
    hw_of[0] = hw_of[1] = hw_of[2] = &hs[0];
    hw_of[3] = &hs[1];
    hw_of[4] = hw_of[5] = &hs[2];
    hw_of[6] = &hs[3];
    size_t ws = resq_layer_f32_workspace_size(c, T);
    void *work = malloc(ws);
    float *x = (float *)malloc(sizeof(float) * (size_t)(T * d)), *xr = (float *)malloc(sizeof(float) * (size_t)(T * d));
    float *aa = (float *)malloc(sizeof(float) * (size_t)(T * d)), *am = (float *)malloc(sizeof(float) * (size_t)(T * d));
    float *oo = (float *)malloc(sizeof(float) * (size_t)(T * qd)), *op = (float *)malloc(sizeof(float) * (size_t)(T * qd));
    float *zz = (float *)malloc(sizeof(float) * (size_t)(T * I));
    if (!work || !x || !xr || !aa || !am || !oo || !op || !zz) {
      free(work), free(x), free(xr), free(aa), free(am), free(oo), free(op), free(zz);
      NOMEM_IF(1);
    }
    resq_layer_taps tp = {0};
    tp.a_attn = aa, tp.a_mlp = am, tp.o = oo, tp.z = zz;
    resq_layer_prepared view; /* enough of P for the basis map */
    memset(&view, 0, sizeof view);
    view.c = *c, view.U = U;
    for (int64_t s = 0; s < nseq && !st; s++) {
      resq_f16_to_f32_n(calib + s * T * d, x, (size_t)(T * d));
      st = resq_layer_to_basis_f32__ref(&view, T, x, xr);
      if (!st) st = resq_layer_f32_forward__ref(c, &rot, T, xr, xr, &tp, work, ws);
      if (st) break;
      for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < qd; j++) op[t * qd + j] = oo[t * qd + order[j]];
      if (!st) st = resq_gptq_add_batch_f32__ref(&hs[0], 1, T, aa, d);
      if (!st) st = resq_gptq_add_batch_f32__ref(&hs[1], 1, T, op, qd);
      if (!st) st = resq_gptq_add_batch_f32__ref(&hs[2], 1, T, am, d);
      if (!st) st = resq_gptq_add_batch_f32__ref(&hs[3], 1, T, zz, I);
    }
    free(work), free(x), free(xr), free(aa), free(am), free(oo), free(op), free(zz);
    if (st) goto fail;
    calib_tokens = nseq * T;
  }
  double t2 = now_s();

  /* ---- 5b. quantization and 6. packing */
  resq_qweight qw[RESQ_LW_COUNT];
  memset(qw, 0, sizeof qw);
  resq_layer_prepare_info info;
  memset(&info, 0, sizeof info);
  const resq_qact_params *split_of[RESQ_LW_COUNT] = {&s_qkv, &s_qkv, &s_qkv, &s_o, &s_gu, &s_gu, &s_down};
  const resq_qact_layout *lay_of[RESQ_LW_COUNT] = {&lay[0], &lay[0], &lay[0], &lay[1], &lay[2], &lay[2], &lay[3]};
  for (int i = 0; i < RESQ_LW_COUNT; i++) {
    const int64_t N = W[i].N, K = W[i].K;
    const float *Wi = i == RESQ_LW_O ? wo_perm : wf[i];
    const resq_qact_params *sp = split_of[i];
    resq_gptq_params gp = resq_gptq_default(K);
    gp.q.r = sp->r * (K / sp->group); /* hi columns of the whole row: the last ngroups*r after the permutation */
    gp.q.bits_lo = sp->bits_lo;
    gp.q.bits_hi = sp->bits_hi;
    gp.q.mse = p.w_clip;
    gp.percdamp = p.percdamp;
    int8_t *codes = (int8_t *)malloc((size_t)(N * K));
    float *sl = (float *)calloc((size_t)N, sizeof(float)), *sh = (float *)calloc((size_t)N, sizeof(float));
    float *Qg = NULL, *Qr = NULL;
    void *gw = NULL;
    int bad = !codes || !sl || !sh;
    if (!bad && gptq) {
      size_t gws = resq_gptq_workspace_size(&gp, N);
      gw = malloc(gws ? gws : 1);
      Qg = (float *)malloc(sizeof(float) * (size_t)(N * K));
      Qr = (float *)malloc(sizeof(float) * (size_t)(N * K));
      bad = !gws || !gw || !Qg || !Qr;
      if (!bad) {
        resq_gptq_info gi;
        memset(&gi, 0, sizeof gi);
        st = resq_gptq_f64__ref(&gp, hw_of[i], N, Wi, K, codes, K, sl, sh, Qg, K, &gi, gw, gws);
        free(gw), gw = NULL;
        /* round-to-nearest for comparison: GPTQ's scales ARE section 10's scales on the
         * original W (CONTRACT s.12 step 2), so RTN is s * code(w, s) with them; this is
         * resq_gptq_rtn_f32__ref without repeating the (MSE) scale search */
        const int64_t Klo = K - gp.q.r;
        for (int64_t n = 0; n < N && !st; n++)
          for (int64_t k = 0; k < K; k++) {
            const int hi = k >= Klo;
            const float sc = hi ? sh[n] : sl[n];
            Qr[n * K + k] = sc * (float)resq_wquant_code(Wi[n * K + k], sc, hi ? gp.q.bits_hi : gp.q.bits_lo);
          }
        if (!st) st = resq_gptq_objective_f64__ref(hw_of[i], N, Wi, K, Qg, K, &info.obj_gptq[i], NULL);
        if (!st) st = resq_gptq_objective_f64__ref(hw_of[i], N, Wi, K, Qr, K, &info.obj_rtn[i], NULL);
        info.dead[i] = gi.dead;
      }
    } else if (!bad) {
      st = resq_gptq_rtn_f32__ref(&gp, N, Wi, K, codes, K, sl, sh, NULL, 0);
      info.obj_gptq[i] = info.obj_rtn[i] = -1.0;
    }
    /* the Hessian of a group is no longer needed once its last weight is done */
    if (gptq && (i == RESQ_LW_V || i == RESQ_LW_O || i == RESQ_LW_UP || i == RESQ_LW_DOWN))
      resq_gptq_hessian_free(hw_of[i]);
    if (!bad && !st) {
      const resq_qact_layout *L = lay_of[i];
      qw[i].N = N;
      qw[i].q_lo = OWN(uint8_t, N * L->lo_bytes);
      qw[i].ld_lo = L->lo_bytes;
      qw[i].q_hi = OWN(int8_t, N * L->hi_bytes);
      qw[i].ld_hi = L->hi_bytes;
      qw[i].scale_lo = OWN(float, N);
      qw[i].scale_hi = OWN(float, N);
      qw[i].sum_lo = OWN(int32_t, N * L->ngroups);
      qw[i].sum_hi = OWN(int32_t, N * L->ngroups);
      bad = !qw[i].q_lo || !qw[i].q_hi || !qw[i].scale_lo || !qw[i].scale_hi || !qw[i].sum_lo || !qw[i].sum_hi;
      if (!bad) st = resq_gemm_pack_weight(sp, N, codes, K, sl, sh, &qw[i]);
    }
    free(codes), free(sl), free(sh), free(Qg), free(Qr), free(gw);
    NOMEM_IF(bad);
    if (st) goto fail;
  }
  double t3 = now_s();

  /* ---- assemble */
  P.c = *c;
  P.p = p;
  P.r = r, P.r_h = r_h, P.r_down = r_down;
  P.L.s_qkv = s_qkv, P.L.s_o = s_o, P.L.s_gu = s_gu, P.L.s_down = s_down, P.L.s_kv = s_kv, P.L.s_qk8 = s_qk8;
  P.L.wq = qw[0], P.L.wk = qw[1], P.L.wv = qw[2], P.L.wo = qw[3], P.L.wg = qw[4], P.L.wu = qw[5], P.L.wd = qw[6];
  P.L.k8 = k8;
  P.L.online_hadamard = !rtn;
  P.L.qk_rot_no_prequant = quarot;
  P.rot = rot;
  P.o_order = order;
  P.U = U, P.Uv = Uv, P.Uk = Uk, P.eig_attn_mlp = eig;
  info.calib_tokens = calib_tokens;
  info.seconds_basis = t1 - t0, info.seconds_hessian = t2 - t1, info.seconds_quant = t3 - t2;
  P.info = info;
  P.mem_ = om;
  own_free(&tmp);
  resq_pca_accum_free(&accA), resq_pca_accum_free(&accK);
  if (accV)
    for (int64_t g = 0; g < G; g++) resq_pca_accum_free(&accV[g]);
  free(accV);
  for (int i = 0; i < 4; i++) resq_gptq_hessian_free(&hs[i]);
  *out = P;
  return RESQ_OK;

fail:
  own_free(om);
  free(om);
  own_free(&tmp);
  resq_pca_accum_free(&accA), resq_pca_accum_free(&accK);
  if (accV)
    for (int64_t g = 0; g < G; g++) resq_pca_accum_free(&accV[g]);
  free(accV);
  for (int i = 0; i < 4; i++) resq_gptq_hessian_free(&hs[i]);
  return st;
#undef OWN
#undef TMP
#undef NOMEM_IF
}
