/* SPDX-License-Identifier: Apache-2.0
 * Derived-bound checks of the decoder-layer pipeline (ref/CONTRACT.md s.14):
 *
 *  rotated_fp32_same_function_{resq,quarot,rtn}
 *      the fused weights of a prepared layer (gamma folded, rotated by U, U_v,
 *      H_I) run in the fp32 form on h U compute, mapped back by U^T, the same
 *      function as the fp32 form of the ORIGINAL layer (gamma in RMSNorm):
 *      || rot(h U) U^T - orig(h) || <= 2 (E_orig + E_rot) per token, for the
 *      attention block alone (W_d = 0 in both), the MLP block alone (W_o = 0 in
 *      both) and the whole layer; every fused weight also equals the exact
 *      rotated weight (computed here in long double) up to fp32 roundings.
 *      The blocks' bounds are ~1e-2 of their update (required: < 0.1, a wiring
 *      error is O(1)); the whole layer compounds the worst cases of both blocks
 *      (softmax and SiLU sensitivities multiply) and only has to stay inside
 *      its bound. The quantized layer is checked stage by stage in
 *      layer_stages_test.c: a chained worst-case bound like this one is
 *      informative for fp32 roundings but not for 8-bit quantization.
 *
 * E_path is a first-order forward error bound of one path against the exact
 * layer, chained per token through the layer (norms are l2 over the token's
 * vector or head; "exact" uses the same fp32 cos/sin of RoPE in every path):
 *   input map       fp32(hU): (u + g53_d sqrt d) |x|
 *   RMSNorm         n = x / rho is 1/rho-Lipschitz (J = (I - n n^T / d) / rho), so
 *                   e_n = e_x / rho + c |n|, c = 3u (rinv: fp32 ms, +eps, sqrt, 1/.)
 *                   + u (x * rinv) [+ u (* gamma), original layer only]
 *   linear y = n M^T (M = W diag(gamma) in both paths; the rotated path applies
 *                   its fused weight, M U + dM):
 *                   e_y = (|M|_2 + |dM|_2) e_n + |dM|_2 |n| + g53_K |x| |W|_F + u |y|
 *                   |M|_2 and |dM|_2 certified from the eigenvalues of the Gram
 *                   matrices, dM MEASURED (fused fp32 weight against the exact
 *                   long-double rotation), the summation term from
 *                   sum_k |x_k||w_nk| <= |x| |w_n| (double sums, one rounding)
 *   RoPE            2x2 rotations with the same fp32 (c, s): (1 + 2u) e + 3u |q|
 *   attention       o = sum_j p_j v_j, p = softmax(s): |dp|_1 <= 2 max_j |ds_j|
 *                   (softmax Jacobian diag(p) - p p^T), so per head
 *                   e_o <= max_j e_v_j + 2 max_j |ds_j| max_j |v_j| + u |o|,
 *                   |ds_j| <= (e_q |k_j| + |q| e_k_j) / sqrt(hd) (+ the K8 term)
 *   residual        e_h1 = e_x + e_y + u |h1|
 *   SiLU(g) u       |SiLU'| <= 1.1: e_z = 1.1 max|u| e_g + max|SiLU(g)| e_u + 5u |z|
 *                   (expf <= 1 ulp, +1, /, *)
 *   Hadamard        orthogonal; its rounding g_{log2 m + K + 2} |z|_1 (s.8)
 *   output map      h' U^T in double: g53_d sqrt(d) |h|
 * The norms are those of the exact layer, taken from the fp32 form (first
 * order; the factor 2 of the check covers the second-order terms).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/layer_prepare.h"
#include "resq/layer_synth.h"
#include "resq/pca.h"
#include "resq_check.h"

static const double U32 = 0x1p-24, U53 = 0x1p-53;
static double g53(double n) { return n * U53 / (1.0 - n * U53); }
static double g24(double n) { return n * U32 / (1.0 - n * U32); }

typedef long double ld;

static double *dcalloc(size_t n) { return (double *)calloc(n ? n : 1, sizeof(double)); }
static float *fcalloc(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }

static double norm2f(const float *x, int64_t n) {
  ld s = 0;
  for (int64_t i = 0; i < n; i++) s += (ld)x[i] * x[i];
  return (double)sqrtl(s);
}

/* ------------------------------------------------------------------ exact weights and their norms */

enum { WQ, WK, WV, WO, WG, WU, WD, NW };

typedef struct {
  int64_t N[NW], K[NW];
  double *M[NW];    /* exact M = W diag(gamma) (original basis), double */
  double M2[NW];    /* certified upper bound of |M|_2 */
  double WF[NW];    /* |W|_F of the stored f16 weight (operand of the orig/FP16 GEMMs) */
} exact_w;

/* |M|_2 <= sqrt(lambda_max(Gram) + 8 n eps |Gram|_F + n eps |Gram|_F): the eigensolver's backward
 * error (the bound B1 of pca_f64__ref_test) and the Gram matrix's own rounding, both tiny. */
static double spectral_bound(const double *M, int64_t N, int64_t K) {
  const int64_t n = N < K ? N : K;
  double *Gm = dcalloc((size_t)(n * n)), *w = dcalloc((size_t)n);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j <= i; j++) {
      ld s = 0;
      if (N < K)
        for (int64_t k = 0; k < K; k++) s += (ld)M[i * K + k] * M[j * K + k];
      else
        for (int64_t k = 0; k < N; k++) s += (ld)M[k * K + i] * M[k * K + j];
      Gm[i * n + j] = Gm[j * n + i] = (double)s;
    }
  ld gf = 0;
  for (int64_t i = 0; i < n * n; i++) gf += (ld)Gm[i] * Gm[i];
  size_t ws = resq_eigh_workspace_size(n);
  void *work = malloc(ws);
  resq_status st = resq_eigh_f64__ref(n, Gm, n, w, work, ws);
  double lmax = st ? INFINITY : w[n - 1];
  free(Gm), free(w), free(work);
  return sqrt(lmax + 9.0 * (double)n * 0x1p-52 * (double)sqrtl(gf));
}

static void exact_init(exact_w *e, const resq_layer_config *c, const resq_layer_fp16 *w, int zero_mask) {
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  const int64_t N[NW] = {qd, kd, kd, d, I, I, d}, K[NW] = {d, d, d, qd, d, d, I};
  const uint16_t *src[NW] = {w->wq, w->wk, w->wv, w->wo, w->wg, w->wu, w->wd};
  const float *gam[NW] = {w->ln1, w->ln1, w->ln1, NULL, w->ln2, w->ln2, NULL};
  for (int i = 0; i < NW; i++) {
    e->N[i] = N[i], e->K[i] = K[i];
    e->M[i] = dcalloc((size_t)(N[i] * K[i]));
    ld wf = 0;
    for (int64_t n = 0; n < N[i]; n++)
      for (int64_t k = 0; k < K[i]; k++) {
        double v = resq_f16_to_f32(src[i][n * K[i] + k]);
        wf += (ld)v * v;
        e->M[i][n * K[i] + k] = gam[i] ? v * (double)gam[i][k] : v; /* exact in double */
      }
    e->WF[i] = (double)sqrtl(wf);
    if (zero_mask & (1 << i)) { /* this weight is zero in every path of the case */
      memset(e->M[i], 0, sizeof(double) * (size_t)(N[i] * K[i]));
      e->WF[i] = 0.0;
    }
    e->M2[i] = (zero_mask & (1 << i)) ? 0.0 : spectral_bound(e->M[i], N[i], K[i]);
  }
}

static void exact_free(exact_w *e) {
  for (int i = 0; i < NW; i++) free(e->M[i]);
}

/* The exact rotated weights of a prepared layer, in double: q/k/v/gate/up M U, v rows of KV head g
 * U_v[g]^T (.), o columns of head h (.) U_v[h/rep] then U^T (.), down (U^T M) H_I^T. Returns
 * |applied - exact|_F for the applied fp32 matrix A (row-major like M) plus g53(n) sqrt(n) |M|_F for
 * the double products computed here. */
static double rotated_err(const exact_w *e, int i, const resq_layer_config *c, const resq_layer_prepared *P,
                          const float *A, double *spec) {
  const int64_t N = e->N[i], K = e->K[i], d = c->d, hd = c->hd, H = c->H, G = c->G, I = c->I;
  const double *M = e->M[i], *U = P->U, *Uv = P->Uv;
  double *R = dcalloc((size_t)(N * K)), *T1 = dcalloc((size_t)(N * K));
  if (!U) {
    memcpy(R, M, sizeof(double) * (size_t)(N * K));
  } else if (i == WQ || i == WK || i == WV || i == WG || i == WU) {
    for (int64_t n = 0; n < N; n++)
      for (int64_t j = 0; j < K; j++) {
        ld s = 0;
        for (int64_t k = 0; k < K; k++) s += (ld)M[n * K + k] * U[k * d + j];
        R[n * K + j] = (double)s;
      }
    if (i == WV) {
      memcpy(T1, R, sizeof(double) * (size_t)(N * K));
      for (int64_t g = 0; g < G; g++)
        for (int64_t a = 0; a < hd; a++)
          for (int64_t j = 0; j < K; j++) {
            ld s = 0;
            for (int64_t b = 0; b < hd; b++) s += (ld)Uv[g * hd * hd + b * hd + a] * T1[(g * hd + b) * K + j];
            R[(g * hd + a) * K + j] = (double)s;
          }
    }
  } else if (i == WO) {
    const int64_t rep = H / G;
    for (int64_t n = 0; n < N; n++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t a = 0; a < hd; a++) {
          ld s = 0;
          for (int64_t b = 0; b < hd; b++) s += (ld)M[n * K + h * hd + b] * Uv[(h / rep) * hd * hd + b * hd + a];
          T1[n * K + h * hd + a] = (double)s;
        }
    for (int64_t a = 0; a < N; a++)
      for (int64_t j = 0; j < K; j++) {
        ld s = 0;
        for (int64_t k = 0; k < N; k++) s += (ld)U[k * d + a] * T1[k * K + j];
        R[a * K + j] = (double)s;
      }
  } else { /* down: (U^T M) then the input-side Hadamard y = x H_I^T on every row */
    for (int64_t a = 0; a < N; a++)
      for (int64_t j = 0; j < K; j++) {
        ld s = 0;
        for (int64_t k = 0; k < N; k++) s += (ld)U[k * d + a] * M[k * K + j];
        T1[a * K + j] = (double)s;
      }
    const double inv = 1.0 / sqrt((double)I);
    for (int64_t a = 0; a < N; a++)
      for (int64_t j = 0; j < K; j++) {
        ld s = 0;
        for (int64_t k = 0; k < K; k++) s += (ld)T1[a * K + k] * (double)resq_hadamard_entry(I, j, k);
        R[a * K + j] = (double)(s * inv);
      }
  }
  ld df = 0, mf = 0;
  for (int64_t x = 0; x < N * K; x++) {
    ld t = (ld)A[x] - R[x];
    df += t * t, mf += (ld)M[x] * M[x];
    T1[x] = (double)t; /* the difference, for its spectral norm */
  }
  /* long double products: at most 3 chained sums of <= max(d, I) terms, each g64-bounded; g53 is the
   * (larger) double version, kept as the safe bound of this reference computation */
  const double n = (double)(d > I ? d : I), slack = 3.0 * g53(n) * sqrt(n) * (double)sqrtl(mf);
  /* |dM|_2 <= |computed difference|_2 + |its own error|_F; the rounding of T1 to double is relative 2^-53 */
  if (spec) *spec = spectral_bound(T1, N, K) * (1.0 + 2 * U53) + slack;
  free(R), free(T1);
  return (double)sqrtl(df) + slack;
}

/* ------------------------------------------------------------------ reference norms */

typedef struct {
  int64_t T, H, G, hd;
  double *nx, *rho1, *nn1, *na1, *ny1, *nh1, *rho2, *nn2, *na2, *umax, *smax, *nz, *nz1, *ny2, *nh2, *no;
  double *ng, *nu;
  double *nq, *nk, *nv, *noh; /* [T][H], [T][G], [T][G], [T][H] */
} refd;

static void ref_init(refd *r, const resq_layer_config *c, int64_t T, const float *x, const resq_layer_taps *tp,
                     const float *h2) {
  const int64_t d = c->d, H = c->H, G = c->G, hd = c->hd, I = c->I, qd = H * hd, kd = G * hd;
  r->T = T, r->H = H, r->G = G, r->hd = hd;
  double **per_t[] = {&r->nx, &r->rho1, &r->nn1, &r->na1, &r->ny1, &r->nh1, &r->rho2, &r->nn2,
                      &r->na2, &r->umax, &r->smax, &r->nz, &r->nz1, &r->ny2, &r->nh2, &r->no, &r->ng, &r->nu};
  for (size_t i = 0; i < sizeof per_t / sizeof per_t[0]; i++) *per_t[i] = dcalloc((size_t)T);
  r->nq = dcalloc((size_t)(T * H)), r->nk = dcalloc((size_t)(T * G)), r->nv = dcalloc((size_t)(T * G));
  r->noh = dcalloc((size_t)(T * H));
  float *tmp = fcalloc((size_t)d);
  for (int64_t t = 0; t < T; t++) {
    const float *xt = x + t * d, *hm = tp->h_mid + t * d, *ht = h2 + t * d;
    r->nx[t] = norm2f(xt, d);
    r->rho1[t] = sqrt(r->nx[t] * r->nx[t] / (double)d + (double)c->eps);
    r->nn1[t] = r->nx[t] / r->rho1[t];
    r->na1[t] = norm2f(tp->a_attn + t * d, d);
    for (int64_t i = 0; i < d; i++) tmp[i] = hm[i] - xt[i];
    r->ny1[t] = norm2f(tmp, d);
    r->nh1[t] = norm2f(hm, d);
    r->rho2[t] = sqrt(r->nh1[t] * r->nh1[t] / (double)d + (double)c->eps);
    r->nn2[t] = r->nh1[t] / r->rho2[t];
    r->na2[t] = norm2f(tp->a_mlp + t * d, d);
    double um = 0, sm = 0, z1 = 0;
    for (int64_t i = 0; i < I; i++) {
      double g = tp->g[t * I + i], u = tp->u[t * I + i], sg = g / (1.0 + exp(-g));
      um = fmax(um, fabs(u)), sm = fmax(sm, fabs(sg)), z1 += fabs(sg * u);
    }
    r->umax[t] = um, r->smax[t] = sm, r->nz1[t] = z1;
    r->nz[t] = norm2f(tp->z + t * I, I);
    r->ng[t] = norm2f(tp->g + t * I, I), r->nu[t] = norm2f(tp->u + t * I, I);
    for (int64_t i = 0; i < d; i++) tmp[i] = ht[i] - hm[i];
    r->ny2[t] = norm2f(tmp, d);
    r->nh2[t] = norm2f(ht, d);
    r->no[t] = norm2f(tp->o + t * qd, qd);
    for (int64_t h = 0; h < H; h++) r->nq[t * H + h] = norm2f(tp->q + t * qd + h * hd, hd);
    for (int64_t h = 0; h < H; h++) r->noh[t * H + h] = norm2f(tp->o + t * qd + h * hd, hd);
    for (int64_t g = 0; g < G; g++) r->nk[t * G + g] = norm2f(tp->k + t * kd + g * hd, hd);
    for (int64_t g = 0; g < G; g++) r->nv[t * G + g] = norm2f(tp->v + t * kd + g * hd, hd);
  }
  free(tmp);
}

static void ref_free(refd *r) {
  double *all[] = {r->nx, r->rho1, r->nn1, r->na1, r->ny1, r->nh1, r->rho2, r->nn2, r->na2, r->umax,
                   r->smax, r->nz, r->nz1, r->ny2, r->nh2, r->no, r->nq, r->nk, r->nv, r->noh, r->ng, r->nu};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* ------------------------------------------------------------------ the chained bound */

enum { P_F32_ORIG, P_F32_ROT };

typedef struct {
  int kind;          /* P_F32_ORIG: original weights, gammas in RMSNorm; P_F32_ROT: fused weights on h U */
  double dM[NW];     /* |fused weight - exact rotated M|_2, measured (certified spectral norm) */
  double opF[NW];    /* |operand weight|_F of each GEMM (summation-error terms) */
  int had;           /* online Hadamard before down_proj */
  double ghad;       /* its gamma_{log2 m + K + 2} */
} pathd;

/* the linear stage: e_y = (|M|_2 + |dM|_2) e_n + |dM|_2 |n| + g53_K |x| |W|_F + u |y| */
static double lin(const pathd *p, const exact_w *e, int i, double en, double nn, double nop, double nout) {
  const double K = (double)e->K[i];
  const double sum = p->kind == P_F32_ORIG ? g53(K) * nop * e->WF[i] : g53(K) * nn * p->opF[i];
  const double dM = p->kind == P_F32_ROT ? p->dM[i] : 0.0;
  return (e->M2[i] + dM) * en + dM * nn + sum + U32 * nout;
}

/* E_path per token into E[T] */
static void chain(const pathd *p, const exact_w *e, const refd *r, const resq_layer_config *c, double *E) {
  const int64_t T = r->T, H = r->H, G = r->G, hd = r->hd, d = c->d, rep = H / G;
  const int rotp = p->kind == P_F32_ROT;
  double *eq = dcalloc((size_t)(T * H)), *ek = dcalloc((size_t)(T * G)), *ev = dcalloc((size_t)(T * G));
  double *ex = dcalloc((size_t)T);
  const double sqd = sqrt((double)d), shd = sqrt((double)hd);
  const double rms_loc = rotp ? 4 * U32 : 5 * U32; /* the gamma multiply only in the original */
  for (int64_t t = 0; t < T; t++) {
    ex[t] = rotp ? (U32 + g53(d) * sqd) * r->nx[t] : 0.0;
    const double en = ex[t] / r->rho1[t] + rms_loc * r->nn1[t];
    double nq = 0, nk = 0, nv = 0;
    for (int64_t h = 0; h < H; h++) nq += r->nq[t * H + h] * r->nq[t * H + h];
    for (int64_t g = 0; g < G; g++) nk += r->nk[t * G + g] * r->nk[t * G + g], nv += r->nv[t * G + g] * r->nv[t * G + g];
    const double e_q = lin(p, e, WQ, en, r->nn1[t], r->na1[t], sqrt(nq));
    const double e_k = lin(p, e, WK, en, r->nn1[t], r->na1[t], sqrt(nk));
    const double e_v = lin(p, e, WV, en, r->nn1[t], r->na1[t], sqrt(nv));
    for (int64_t h = 0; h < H; h++) eq[t * H + h] = (1 + 2 * U32) * e_q + 3 * U32 * r->nq[t * H + h]; /* RoPE */
    for (int64_t g = 0; g < G; g++) {
      ek[t * G + g] = (1 + 2 * U32) * e_k + 3 * U32 * r->nk[t * G + g];
      ev[t * G + g] = e_v;
    }
  }
  for (int64_t t = 0; t < T; t++) {
    double eo2 = 0;
    for (int64_t h = 0; h < H; h++) {
      const int64_t g = h / rep;
      double mk = 0, mek = 0, mv = 0, mev = 0;
      for (int64_t j = 0; j <= t; j++) {
        mk = fmax(mk, r->nk[j * G + g]), mek = fmax(mek, ek[j * G + g]);
        mv = fmax(mv, r->nv[j * G + g]), mev = fmax(mev, ev[j * G + g]);
      }
      const double ds = (eq[t * H + h] * mk + r->nq[t * H + h] * mek) / shd;
      const double eoh = mev + 2 * ds * mv + U32 * r->noh[t * H + h];
      eo2 += eoh * eoh;
    }
    const double eo = sqrt(eo2);
    const double ey1 = lin(p, e, WO, eo, r->no[t], r->no[t], r->ny1[t]);
    const double eh1 = ex[t] + ey1 + U32 * r->nh1[t];
    const double en2 = eh1 / r->rho2[t] + rms_loc * r->nn2[t];
    const double eg = lin(p, e, WG, en2, r->nn2[t], r->na2[t], r->ng[t]);
    const double eu = lin(p, e, WU, en2, r->nn2[t], r->na2[t], r->nu[t]);
    double ez = 1.1 * r->umax[t] * eg + r->smax[t] * eu + 5 * U32 * r->nz[t];
    if (p->had) ez += p->ghad * r->nz1[t];
    const double ey2 = lin(p, e, WD, ez, r->nz[t], r->nz[t], r->ny2[t]);
    double eh2 = eh1 + ey2 + U32 * r->nh2[t];
    if (rotp) eh2 += g53(d) * sqd * r->nh2[t];
    E[t] = eh2;
  }
  free(eq), free(ek), free(ev), free(ex);
}

/* ------------------------------------------------------------------ cases */

typedef struct {
  resq_layer_config c;
  int64_t T;
  int zero_mask;      /* weights set to zero in every path: 1 << WD checks the attention block alone,
                         1 << WO the MLP block alone (its input is then h itself) */
  resq_layer_synth s;
  resq_layer_fp16 w;  /* the FP16 layer of the case (s.w with the zeroed weights) */
  uint16_t *zero16;
  uint16_t *h16;
  float *x;
  exact_w ew;
  refd ref;
  float *ref_out;
  resq_layer_taps tp;
} fixture;

static float *tapbuf(int64_t n) { return fcalloc((size_t)n); }

static void taps_alloc(resq_layer_taps *tp, const resq_layer_config *c, int64_t T) {
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  tp->a_attn = tapbuf(T * d), tp->q = tapbuf(T * qd), tp->k = tapbuf(T * kd), tp->v = tapbuf(T * kd);
  tp->o = tapbuf(T * qd), tp->h_mid = tapbuf(T * d), tp->a_mlp = tapbuf(T * d), tp->g = tapbuf(T * I);
  tp->u = tapbuf(T * I), tp->z = tapbuf(T * I);
}

static void taps_free(resq_layer_taps *tp) {
  free(tp->a_attn), free(tp->q), free(tp->k), free(tp->v), free(tp->o), free(tp->h_mid), free(tp->a_mlp);
  free(tp->g), free(tp->u), free(tp->z);
}

static float *f16_to_f32_copy(const uint16_t *w, int64_t n) {
  float *o = fcalloc((size_t)n);
  resq_f16_to_f32_n(w, o, (size_t)n);
  return o;
}

/* the synthetic layer, one evaluation sequence, the exact weights and the reference norms from the
 * fp32 form of the original layer (gammas in RMSNorm) */
static int fixture_init(fixture *f, const resq_layer_synth_params *sp, int64_t T, int zero_mask) {
  memset(f, 0, sizeof *f);
  resq_layer_config_named("test", &f->c);
  f->T = T;
  f->zero_mask = zero_mask;
  if (!RC_CHECK(resq_layer_synth_init(&f->s, &f->c, sp, rc_seed()) == RESQ_OK, "synth: %s", resq_last_error()))
    return 0;
  const int64_t d = f->c.d, qd = f->c.H * f->c.hd, kd = f->c.G * f->c.hd, I = f->c.I, n = T * d;
  f->h16 = (uint16_t *)calloc((size_t)n, 2);
  f->x = fcalloc((size_t)n);
  resq_layer_synth_sequence(&f->s, RESQ_SYNTH_STREAM_EVAL, 0, T, f->h16, d);
  resq_f16_to_f32_n(f->h16, f->x, (size_t)n);
  f->w = f->s.w;
  f->zero16 = (uint16_t *)calloc((size_t)(d * (qd > I ? qd : I)), 2);
  if (zero_mask & (1 << WO)) f->w.wo = f->zero16;
  if (zero_mask & (1 << WD)) f->w.wd = f->zero16;
  exact_init(&f->ew, &f->c, &f->w, zero_mask);
  const resq_layer_fp16 *w = &f->w;
  float *wf[NW] = {f16_to_f32_copy(w->wq, qd * d), f16_to_f32_copy(w->wk, kd * d), f16_to_f32_copy(w->wv, kd * d),
                   f16_to_f32_copy(w->wo, d * qd), f16_to_f32_copy(w->wg, I * d), f16_to_f32_copy(w->wu, I * d),
                   f16_to_f32_copy(w->wd, d * I)};
  const resq_layer_f32 orig = {wf[0], wf[1], wf[2], wf[3], wf[4], wf[5], wf[6], w->ln1, w->ln2, 0};
  taps_alloc(&f->tp, &f->c, T);
  f->ref_out = fcalloc((size_t)n);
  size_t ws = resq_layer_f32_workspace_size(&f->c, T);
  void *work = malloc(ws);
  int ok = RC_CHECK(resq_layer_f32_forward__ref(&f->c, &orig, T, f->x, f->ref_out, &f->tp, work, ws) == RESQ_OK,
                    "fp32 form of the original layer: %s", resq_last_error());
  ref_init(&f->ref, &f->c, T, f->x, &f->tp, f->ref_out);
  free(work);
  for (int i = 0; i < NW; i++) free(wf[i]);
  return ok;
}

static void fixture_free(fixture *f) {
  resq_layer_synth_free(&f->s);
  free(f->h16), free(f->x), free(f->ref_out), free(f->zero16);
  exact_free(&f->ew);
  ref_free(&f->ref);
  taps_free(&f->tp);
}

static int64_t calib_tokens_into(fixture *f, int64_t nseq, uint16_t **cal) {
  const int64_t n = f->T * f->c.d;
  *cal = (uint16_t *)calloc((size_t)(n * nseq), 2);
  for (int64_t s = 0; s < nseq; s++) resq_layer_synth_sequence(&f->s, RESQ_SYNTH_STREAM_CALIB, (uint64_t)s, f->T, *cal + s * n, f->c.d);
  return nseq;
}

/* per-token check ||got - want|| <= bound, and bound small against the update */
static void check_tokens(const char *what, const fixture *f, const double *got, const float *want_f, const uint16_t *want_h,
                         const double *bound, double max_bound_frac) {
  const int64_t T = f->T, d = f->c.d;
  long bad = 0;
  double worst = 0, ld2 = 0, lu2 = 0, lb2 = 0;
  for (int64_t t = 0; t < T; t++) {
    double e2 = 0, u2 = 0;
    for (int64_t i = 0; i < d; i++) {
      double w = want_f ? (double)want_f[t * d + i] : (double)resq_f16_to_f32(want_h[t * d + i]);
      double x = (double)f->x[t * d + i];
      e2 += (got[t * d + i] - w) * (got[t * d + i] - w), u2 += (w - x) * (w - x);
    }
    bad += sqrt(e2) > bound[t];
    worst = fmax(worst, sqrt(e2) / bound[t]);
    ld2 += e2, lu2 += u2, lb2 += bound[t] * bound[t];
  }
  printf("  %s: |diff| %.3e, |bound| %.3e, |update| %.3e (diff/bound worst token %.3f; bound/update %.2e)\n", what,
         sqrt(ld2), sqrt(lb2), sqrt(lu2), worst, sqrt(lb2 / lu2));
  RC_CHECK(bad == 0, "%s: %ld of %lld tokens beyond the derived bound (worst diff/bound %.3f)", what, bad, (long long)T,
           worst);
  RC_CHECK(sqrt(lb2 / lu2) < max_bound_frac, "%s: the bound (%.3e of the update) must be below %.3g of the update to "
           "detect a wrongly wired layer", what, sqrt(lb2 / lu2), max_bound_frac);
}

/* the exact Frobenius errors of the fused fp32 weights of P */
static void fused_errors(const fixture *f, const resq_layer_prepared *P, double *dM, double *opF, double *dMF) {
  const float *A[NW] = {P->rot.wq, P->rot.wk, P->rot.wv, P->rot.wo, P->rot.wg, P->rot.wu, P->rot.wd};
  for (int i = 0; i < NW; i++) {
    if (f->zero_mask & (1 << i)) {
      dM[i] = opF[i] = dMF[i] = 0.0;
      continue;
    }
    dMF[i] = rotated_err(&f->ew, i, &f->c, P, A[i], &dM[i]);
    opF[i] = norm2f(A[i], f->ew.N[i] * f->ew.K[i]);
  }
}

static double hadamard_gamma(int64_t n) {
  int K = 1;
  int64_t m = n;
  resq_hadamard_factor(n, &K, &m);
  int l = 0;
  while (((int64_t)1 << l) < m) l++;
  return g24((double)(l + K + 2));
}

static const char *const k_block_name[3] = {"attention block", "MLP block", "whole layer"};
static const int k_block_mask[3] = {1 << WD, 1 << WO, 0};

/* one block of the rotated/original comparison; dM/opF measured on the full layer (zeroed weights: 0) */
static void compare_rotated(const resq_layer_prepared *P, const double *dM_full, const double *opF_full, int block,
                            double max_frac) {
  fixture f;
  const int64_t T = 24;
  if (!fixture_init(&f, NULL, T, k_block_mask[block])) return;
  const int64_t n = T * f.c.d, d = f.c.d, qd = f.c.H * f.c.hd, I = f.c.I;
  float *zero = fcalloc((size_t)(d * (qd > I ? qd : I)));
  resq_layer_f32 rot = P->rot;
  if (f.zero_mask & (1 << WO)) rot.wo = zero;
  if (f.zero_mask & (1 << WD)) rot.wd = zero;
  float *xr = fcalloc((size_t)n);
  double *got = dcalloc((size_t)n), *Eo = dcalloc((size_t)T), *Er = dcalloc((size_t)T), *B = dcalloc((size_t)T);
  size_t ws = resq_layer_f32_workspace_size(&f.c, T);
  void *work = malloc(ws);
  RC_CHECK(resq_layer_to_basis_f32__ref(P, T, f.x, xr) == RESQ_OK, "to basis");
  RC_CHECK(resq_layer_f32_forward__ref(&f.c, &rot, T, xr, xr, NULL, work, ws) == RESQ_OK, "rotated fp32 form: %s",
           resq_last_error());
  RC_CHECK(resq_layer_from_basis_f32__ref(P, T, xr, got) == RESQ_OK, "from basis");
  pathd po, pr;
  memset(&po, 0, sizeof po), memset(&pr, 0, sizeof pr);
  po.kind = P_F32_ORIG;
  pr.kind = P_F32_ROT;
  for (int i = 0; i < NW; i++) {
    const int z = (f.zero_mask >> i) & 1;
    pr.dM[i] = z ? 0.0 : dM_full[i], pr.opF[i] = z ? 0.0 : opF_full[i];
  }
  pr.had = P->rot.online_hadamard;
  pr.ghad = hadamard_gamma(f.c.I);
  chain(&po, &f.ew, &f.ref, &f.c, Eo);
  chain(&pr, &f.ew, &f.ref, &f.c, Er);
  for (int64_t t = 0; t < T; t++) B[t] = 2 * (Eo[t] + Er[t]);
  char what[96];
  snprintf(what, sizeof what, "rotated fp32 vs original fp32, %s", k_block_name[block]);
  check_tokens(what, &f, got, f.ref_out, NULL, B, max_frac);
  free(zero), free(xr), free(got), free(Eo), free(Er), free(B), free(work);
  fixture_free(&f);
}

static void case_rotated(resq_layer_method m) {
  char name[64];
  snprintf(name, sizeof name, "rotated_fp32_same_function_%s", resq_layer_method_name(m));
  if (!rc_case(name)) return;
  fixture f;
  const int64_t T = 24;
  rc_note("config test, T=%lld, 4 calibration sequences", (long long)T);
  if (!fixture_init(&f, NULL, T, 0)) return;
  uint16_t *cal;
  int64_t nseq = calib_tokens_into(&f, 4, &cal);
  resq_layer_prepare_params pp = resq_layer_prepare_default(m);
  pp.wquant = RESQ_WQUANT_RTN, pp.w_clip = 0, pp.seed = rc_seed();
  resq_layer_prepared P;
  if (RC_CHECK(resq_layer_prepare_f32__ref(&f.c, &f.s.w, nseq, T, cal, &pp, &P) == RESQ_OK, "prepare: %s",
               resq_last_error())) {
    double dM[NW], opF[NW], dMF[NW];
    fused_errors(&f, &P, dM, opF, dMF);
    printf("  fused weights |dM|_F / |M|_F: q %.2e k %.2e v %.2e o %.2e gate %.2e up %.2e down %.2e\n",
           dMF[WQ] / opF[WQ], dMF[WK] / opF[WK], dMF[WV] / opF[WV], dMF[WO] / opF[WO], dMF[WG] / opF[WG],
           dMF[WU] / opF[WU], dMF[WD] / opF[WD]);
    /* Each fused entry is at most 3 fp32 roundings (fold, fusion, Hadamard) of its exact value plus the
     * Hadamard's g_{log2 m + K + 2} |row|_1: |dM|_F <= (3u + g_had sqrt(I)) |M|_F < 1e-6 |M|_F here. A wrong
     * basis, head or side would be O(1). */
    int okw = 1;
    for (int i = 0; i < NW; i++) okw &= dMF[i] <= 1e-6 * opF[i];
    RC_CHECK(okw, "every fused weight equals the exact rotated weight up to fp32 roundings");
    /* blocks alone (the other block's output projection zero in both paths): the sharp checks; the
     * whole layer compounds the worst cases of both blocks and only has to stay within its bound */
    compare_rotated(&P, dM, opF, 0, 0.1);
    compare_rotated(&P, dM, opF, 1, 0.1);
    compare_rotated(&P, dM, opF, 2, INFINITY);
    resq_layer_prepared_free(&P);
  }
  free(cal);
  fixture_free(&f);
}

int main(int argc, char **argv) {
  rc_init("layer_bounds_test", argc, argv);
  case_rotated(RESQ_LAYER_RESQ);
  case_rotated(RESQ_LAYER_QUAROT);
  case_rotated(RESQ_LAYER_RTN);
  return rc_finish();
}
