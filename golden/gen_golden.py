#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Golden-data generator for the resq kernels.

An independent numpy re-implementation of ref/CONTRACT.md sections 1-5 and 8-14. It
reads nothing of the C reference except the data file
ref/src/hadamard_tables.c (the +/-1 matrices hadK). Every value that the
contract computes in fp32 is computed here elementwise in numpy float32, one
rounding per operation, in the order the contract writes; no matrix product
or reduction is used for anything but min/max (which are exact).

Usage:  /usr/bin/python3 golden/gen_golden.py [--out DIR]

Writes DIR/data/<stage>/<case>/<file>.npy and DIR/MANIFEST.tsv (DIR defaults
to the directory of this script). Deterministic: two runs give identical
bytes (with the same numpy version; the random streams are numpy's PCG64
Generator seeded per case).
"""

import argparse
import hashlib
import math
import os
import re
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES_C = os.path.join(HERE, os.pardir, "ref", "src", "hadamard_tables.c")

F16 = np.dtype("<f2")
F32 = np.dtype("<f4")
U8 = np.dtype("|u1")
I8 = np.dtype("|i1")
I32 = np.dtype("<i4")
F64 = np.dtype("<f8")
DTYPE_NAMES = {F16: "f16", F32: "f32", U8: "u8", I8: "i8", I32: "i32", F64: "f64"}

STAGE_HAD = "hadamard_f16"
STAGE_ACT = "quant_act_f16_q4q8"
STAGE_KV = "quant_kv_f16_q4q8"
STAGE_QW = "quant_weight_f32"
STAGE_GEMM = "gemm_q4q8_f16"
STAGE_GF16 = "gemm_f16"
STAGE_GPTQ = "gptq_f64"
STAGE_PCA = "pca_f64"
STAGE_LF16 = "layer_fp16_f16"
STAGE_LQ = "layer_q4q8_f16"
STAGES = (STAGE_HAD, STAGE_ACT, STAGE_KV, STAGE_QW, STAGE_GEMM, STAGE_GF16, STAGE_GPTQ, STAGE_PCA, STAGE_LF16,
          STAGE_LQ)

MANIFEST_HEADER = "stage\tcase\tfile\trole\tdtype\tshape\tseed\tparams\tsha256"

# --------------------------------------------------------------------------
# Hadamard (CONTRACT section 2)
# --------------------------------------------------------------------------

HAD_ORDERS = (172, 156, 140, 108, 60, 52, 36, 28, 44, 40, 20, 12)  # dispatch order


def load_had_tables(path=TABLES_C):
    """Parse `static const char *const had<K>[<K>] = { "...", ... };`."""
    with open(path, "r", encoding="ascii") as f:
        text = f.read()
    tables = {}
    pat = re.compile(r"static\s+const\s+char\s*\*\s*const\s+had(\d+)\s*\[\s*(\d+)\s*\]\s*=\s*\{(.*?)\};",
                     re.S)
    for mt in pat.finditer(text):
        k = int(mt.group(1))
        if int(mt.group(2)) != k:
            raise ValueError("had%d declared with %s rows" % (k, mt.group(2)))
        rows = re.findall(r'"([+-]*)"', mt.group(3))
        if len(rows) != k or any(len(r) != k for r in rows):
            raise ValueError("had%d: bad shape" % k)
        tables[k] = np.array([[1 if ch == "+" else -1 for ch in r] for r in rows], dtype=np.int8)
    if sorted(tables) != sorted(HAD_ORDERS):
        raise ValueError("hadamard tables: found orders %s" % sorted(tables))
    return tables


def is_pow2(v):
    return v >= 1 and (v & (v - 1)) == 0


def had_dispatch(n):
    """(K, m) per the upstream get_hadK rule, or None if unsupported."""
    if n < 1 or n > (1 << 26):
        return None
    for k in HAD_ORDERS:
        if n % k == 0:
            return (k, n // k) if is_pow2(n // k) else None
    return (1, n) if is_pow2(n) else None


def had_inv(n):
    """inv = (float)(1.0 / (double)sqrtf((float)n))."""
    sq = np.sqrt(np.float32(n))
    assert sq.dtype == np.float32
    return np.float32(1.0 / float(sq))


def hadamard_fp32(x, signs, tables):
    """Steps 1-4 of CONTRACT section 2 on every row of x (float32 [rows, n])."""
    x = np.asarray(x)
    assert x.dtype == np.float32 and x.ndim == 2
    rows, n = x.shape
    km = had_dispatch(n)
    if km is None:
        raise ValueError("unsupported n=%d" % n)
    k, m = km
    # step 1: exact sign flip
    if signs is not None:
        t = np.where(np.asarray(signs)[None, :] < 0, -x, x).astype(np.float32)
    else:
        t = x.copy()
    # step 2: in-place butterflies in each block of m, ascending strides
    t = t.reshape(rows, k, m)
    h = 1
    while h < m:
        v = t.reshape(rows, k, m // (2 * h), 2, h)
        a = v[:, :, :, 0, :]
        b = v[:, :, :, 1, :]
        s = a + b
        d = a - b
        assert s.dtype == np.float32 and d.dtype == np.float32
        t = np.stack([s, d], axis=3).reshape(rows, k, m)
        h *= 2
    # step 3: one fp32 multiply
    inv = had_inv(n)
    u = t * inv
    assert u.dtype == np.float32
    # step 4: left-to-right signed sum over c for each output block a
    if k == 1:
        return u.reshape(rows, n)
    had = tables[k]
    pos0 = (had[:, 0] > 0)[None, :, None]
    u0 = u[:, 0:1, :]
    acc = np.where(pos0, u0, -u0).astype(np.float32)  # [rows, k(a), m]
    for c in range(1, k):
        uc = u[:, c:c + 1, :]
        plus = acc + uc
        minus = acc - uc
        acc = np.where((had[:, c] > 0)[None, :, None], plus, minus)
        assert acc.dtype == np.float32
    return acc.reshape(rows, n)


# --------------------------------------------------------------------------
# bf16 rounding (RNE, integer arithmetic on the fp32 bit pattern)
# --------------------------------------------------------------------------

def rne_bf16(v):
    """Round float32 values to bfloat16 (nearest even), returned as float32."""
    v = np.asarray(v, dtype=np.float32)
    bits = v.view(np.uint32).astype(np.uint64)
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) & np.uint64(0xFFFF0000)
    out = rounded.astype(np.uint32)
    nan = np.isnan(v)
    if nan.any():
        out = np.where(nan, (bits.astype(np.uint32) | np.uint32(0x00400000)) & np.uint32(0xFFFF0000), out)
    return out.view(np.float32).reshape(v.shape)


# --------------------------------------------------------------------------
# Activation quantizer (CONTRACT sections 3, 4, 5)
# --------------------------------------------------------------------------

class Degenerate(Exception):
    pass


def quant_part_a(xp, bits, clip):
    """Path A on parts xp float32 [M, G, n] (n >= 1). Returns q u8, s f32 [M,G], z i32 [M,G], y f32."""
    maxq = (1 << bits) - 1
    fmaxq = np.float32(maxq)
    zero = np.float32(0.0)
    mn = np.minimum(xp.min(axis=-1), zero)
    mx = np.maximum(xp.max(axis=-1), zero)
    mn = mn * clip
    mx = mx * clip
    guard = (mn == 0) & (mx == 0)
    mn = np.where(guard, np.float32(-1.0), mn)
    mx = np.where(guard, np.float32(1.0), mx)
    s = (mx - mn) / fmaxq
    z = np.rint(-mn / s)
    assert s.dtype == np.float32 and z.dtype == np.float32
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise Degenerate("path A scale not positive finite")
    qf = np.rint(xp / s[..., None]) + z[..., None]
    qf = np.minimum(np.maximum(qf, zero), fmaxq)
    assert qf.dtype == np.float32
    q = qf.astype(np.int32)
    zi = z.astype(np.int32)
    assert np.all((zi >= 0) & (zi <= maxq))
    diff = (q - zi[..., None]).astype(np.float32)  # exact integer difference
    y = s[..., None] * diff
    assert y.dtype == np.float32
    return q.astype(np.uint8), s.astype(np.float32), zi, y


def quant_part_b(xp, bits, clip):
    """Path B (upstream bf16 parity) on parts xp float32 [M, G, n]."""
    B = rne_bf16
    maxq = (1 << bits) - 1
    fmaxq = np.float32(maxq)
    xb = B(xp)
    mn = xb.min(axis=-1)
    mx = xb.max(axis=-1)
    mn = B(mn * clip)
    mx = B(mx * clip)
    guard = (mn == 0) & (mx == 0)
    mn = np.where(guard, np.float32(-1.0), mn)
    mx = np.where(guard, np.float32(1.0), mx)
    d = B(mx - mn)
    s = B(d / fmaxq)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise Degenerate("path B scale rounds to 0 or is not finite")
    z = B(np.rint(B(-mn / s)))
    if not (np.all(np.abs(z) < 2.0 ** 31)):
        raise Degenerate("path B zero out of int32 range")
    qf = B(np.rint(B(xb / s[..., None])) + z[..., None])
    qf = np.minimum(np.maximum(qf, np.float32(0.0)), fmaxq)
    y = B(s[..., None] * B(qf - z[..., None]))
    for a in (xb, mn, mx, d, s, z, qf, y):
        assert a.dtype == np.float32
    return qf.astype(np.uint8), s, z.astype(np.int32), y


def pack_nibbles(q):
    """q u8 [M, G, n] -> u8 [M, G*ceil(n/2)]: element 2i low nibble, 2i+1 high nibble."""
    M, G, n = q.shape
    nb = (n + 1) // 2
    padded = np.zeros((M, G, 2 * nb), dtype=np.uint8)
    padded[:, :, :n] = q
    packed = (padded[:, :, 0::2] | (padded[:, :, 1::2] << 4)).astype(np.uint8)
    return packed.reshape(M, G * nb)


def quantize(x, group, r, bits_lo, bits_hi, clip, mode):
    """Quantize x float32 [M, K]. Returns dict of output arrays (named as in the files)."""
    M, K = x.shape
    assert K % group == 0 and 0 <= r <= group
    assert 1 <= bits_lo <= 4 and 1 <= bits_hi <= 8
    clip = np.float32(clip)
    G = K // group
    nlo = group - r
    xg = x.reshape(M, G, group)
    part = {"path-a": quant_part_a, "path-b-bf16": quant_part_b}[mode]
    y = np.zeros((M, G, group), dtype=np.float32)
    out = {}
    if nlo > 0:
        q, s, z, yl = part(np.ascontiguousarray(xg[:, :, :nlo]), bits_lo, clip)
        out["q_lo"] = pack_nibbles(q)
        out["scale_lo"], out["zero_lo"] = s, z
        y[:, :, :nlo] = yl
    else:
        out["q_lo"] = np.zeros((M, 0), dtype=np.uint8)
        out["scale_lo"] = np.zeros((M, G), dtype=np.float32)
        out["zero_lo"] = np.zeros((M, G), dtype=np.int32)
    if r > 0:
        q, s, z, yh = part(np.ascontiguousarray(xg[:, :, nlo:]), bits_hi, clip)
        out["q_hi"] = q.reshape(M, G * r)
        out["scale_hi"], out["zero_hi"] = s, z
        y[:, :, nlo:] = yh
    else:
        out["q_hi"] = np.zeros((M, 0), dtype=np.uint8)
        out["scale_hi"] = np.zeros((M, G), dtype=np.float32)
        out["zero_hi"] = np.zeros((M, G), dtype=np.int32)
    out["y"] = y.reshape(M, K)
    return out


def oproj_order(H, hd, r):
    """order[j] = source column of permuted column j: all lo columns head-major, then all hi."""
    lo = [h * hd + j for h in range(H) for j in range(hd - r)]
    hi = [h * hd + hd - r + j for h in range(H) for j in range(r)]
    return np.array(lo + hi, dtype=np.int32)


# --------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------

def fnv1a32(s):
    h = 0x811C9DC5
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def case_seed(stage, case):
    return fnv1a32(stage + "/" + case) & 0x7FFFFFFF


def to_f16(a):
    a = np.clip(np.asarray(a, dtype=np.float64), -60000.0, 60000.0)
    out = a.astype(F16)
    assert np.all(np.isfinite(out))
    return out


def llm_like(rng, rows, n):
    """LLM-like activations (float64, before the f16 cast)."""
    chscale = np.exp(rng.normal(0.0, 0.5, size=n))
    x = rng.standard_normal((rows, n)) * chscale[None, :]
    n_out = min(n, max(2, int(round(0.005 * n))))
    ch = rng.choice(n, size=n_out, replace=False)
    x[:, ch] *= rng.uniform(50.0, 1000.0, size=n_out)[None, :]
    n_tail = int(round(0.001 * rows * n))
    if n_tail > 0:
        pos = rng.choice(rows * n, size=n_tail, replace=False)
        flat = x.reshape(-1)
        flat[pos] = rng.standard_t(3, size=n_tail) * 20.0
    return x


def gauss(rng, rows, n, scale=3.0):
    return rng.standard_normal((rows, n)) * scale


# --------------------------------------------------------------------------
# Case writing
# --------------------------------------------------------------------------

def fmt_num(v):
    v = float(v)
    return str(int(v)) if v == int(v) else repr(v)


class Writer:
    def __init__(self, out):
        self.out = out
        self.rows = []
        self.cases = {}

    def case(self, stage, case, seed, params, ins, outs):
        key = (stage, case)
        if key in self.cases:
            raise ValueError("duplicate case %s/%s" % key)
        if not re.fullmatch(r"[a-z0-9_]+", case):
            raise ValueError("bad case name %r" % case)
        self.cases[key] = params
        d = os.path.join(self.out, "data", stage, case)
        os.makedirs(d, exist_ok=True)
        for role, arrs in (("in", ins), ("out", outs)):
            for name, arr in arrs:
                arr = np.ascontiguousarray(arr)
                if arr.dtype not in DTYPE_NAMES:
                    raise TypeError("%s/%s/%s: dtype %s" % (stage, case, name, arr.dtype))
                rel = "data/%s/%s/%s.npy" % (stage, case, name)
                path = os.path.join(self.out, rel)
                np.save(path, arr, allow_pickle=False)
                with open(path, "rb") as f:
                    sha = hashlib.sha256(f.read()).hexdigest()
                self.rows.append((stage, case, role, rel, DTYPE_NAMES[arr.dtype],
                                  ",".join(str(s) for s in arr.shape), str(seed), params, sha))

    def write_manifest(self):
        self.rows.sort(key=lambda t: (t[0], t[1], t[2], t[3]))
        lines = [MANIFEST_HEADER]
        for stage, case, role, rel, dt, shape, seed, params, sha in self.rows:
            lines.append("\t".join((stage, case, rel, role, dt, shape, seed, params, sha)))
        with open(os.path.join(self.out, "MANIFEST.tsv"), "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(lines) + "\n")


# ---- hadamard_f16 ----

def had_case(w, tables, case, x16, signs=None, seed=0, expect=None):
    n = x16.shape[1]
    k, m = had_dispatch(n)
    if expect is not None and (k, m) != expect:
        raise AssertionError("%s: n=%d dispatches to K=%d m=%d, expected %s" % (case, n, k, m, expect))
    x32 = x16.astype(np.float32)
    y32 = hadamard_fp32(x32, signs, tables)
    y16 = y32.astype(F16)
    if not np.all(np.isfinite(y16)):
        raise AssertionError("%s: f16 output overflows (the C side would refuse)" % case)
    params = "n=%d;K=%d;m=%d;signs=%d" % (n, k, m, 0 if signs is None else 1)
    ins = [("x", x16.astype(F16))]
    if signs is not None:
        ins.append(("signs", np.asarray(signs).astype(I8)))
    w.case(STAGE_HAD, case, seed, params, ins, [("y_f32", y32.astype(F32)), ("y_f16", y16)])


def gen_hadamard(w, tables):
    st = STAGE_HAD
    # every supported order at n = K (m = 1) and n = 4K (m = 4)
    for k in sorted(HAD_ORDERS):
        for mult in (1, 4):
            n = k * mult
            if had_dispatch(n) != (k, mult):
                continue  # 4*20 = 80 dispatches to had40 (case dispatch_n80)
            case = "order_k%d_n%d" % (k, n)
            seed = case_seed(st, case)
            rng = np.random.default_rng(seed)
            had_case(w, tables, case, to_f16(gauss(rng, 3, n)), seed=seed, expect=(k, mult))
    # powers of two (K = 1)
    for n in (1, 2, 4, 8, 64, 256, 1024):
        case = "pow2_n%d" % n
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        rows = 4 if n >= 64 else 3
        had_case(w, tables, case, to_f16(gauss(rng, rows, n)), seed=seed, expect=(1, n))
    # random signs
    for n, exp in ((256, (1, 256)), (28 * 16, (28, 16))):
        case = "signs_n%d" % n
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        x = to_f16(llm_like(rng, 3, n))
        signs = (rng.integers(0, 2, size=n) * 2 - 1).astype(np.int8)
        had_case(w, tables, case, x, signs=signs, seed=seed, expect=exp)
    # LLM-like rows at model sizes
    for n, exp in ((2048, (1, 2048)), (4096, (1, 4096)), (11008, (172, 64)), (14336, (28, 512))):
        case = "llm_n%d" % n
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        had_case(w, tables, case, to_f16(llm_like(rng, 4, n)), seed=seed, expect=exp)
    # dispatch order: 80 = 40*2 (not 20*4), 320 = 40*8 (not 20*16)
    for n, exp in ((80, (40, 2)), (320, (40, 8))):
        case = "dispatch_n%d" % n
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        had_case(w, tables, case, to_f16(gauss(rng, 3, n)), seed=seed, expect=exp)
    # small integers, n = 4^6: steps 2-3 exact
    case = "int_exact_n4096"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, size=(3, 4096)).astype(np.float64)
    had_case(w, tables, case, to_f16(x), seed=seed, expect=(1, 4096))


# ---- quant_act_f16_q4q8 ----

def act_case(w, case, x16, group=None, r=None, bits_lo=4, bits_hi=8, clip=1.0, mode="path-a",
             oproj=False, seed=0):
    M, K = x16.shape
    group = K if group is None else group
    r = K // 8 if r is None else r
    try:
        out = quantize(x16.astype(np.float32), group, r, bits_lo, bits_hi, clip, mode)
    except Degenerate as e:
        print("skipping %s/%s: %s" % (STAGE_ACT, case, e), file=sys.stderr)
        return
    params = "K=%d;group=%d;r=%d;bits_lo=%d;bits_hi=%d;clip=%s;mode=%s;oproj=%d" % (
        K, group, r, bits_lo, bits_hi, fmt_num(clip), mode, 1 if oproj else 0)
    outs = [(nm, out[nm]) for nm in ("q_lo", "q_hi", "scale_lo", "zero_lo", "scale_hi", "zero_hi", "y")]
    if oproj:
        assert group < K and r > 0
        outs.append(("order", oproj_order(K // group, group, r)))
    w.case(STAGE_ACT, case, seed, params, [("x", x16.astype(F16))], outs)


def tie_rows(K, r, k_lo=4, k_hi=4):
    """Rows whose parts have s = 2^-k exactly and whose other values are exact ties x/s = j + 0.5."""
    nlo = K - r
    rows = []
    for kind in ("pos", "neg", "mixed"):
        lo = np.zeros(nlo)
        hi = np.zeros(r)
        slo = 2.0 ** -k_lo
        shi = 2.0 ** -k_hi
        if kind == "pos":      # mn = 0, mx = 15 s  -> z = 0
            lo_end, lo_j = 15 * slo, [j + 0.5 for j in range(15)]
            hi_end, hi_j = 255 * shi, [j + 0.5 for j in (0, 1, 2, 3, 100, 101, 126, 127, 252, 253, 254)]
        elif kind == "neg":    # mn = -15 s, mx = 0 -> z = 15
            lo_end, lo_j = -15 * slo, [-(j + 0.5) for j in range(15)]
            hi_end, hi_j = -255 * shi, [-(j + 0.5) for j in (0, 1, 2, 3, 100, 101, 126, 127, 252, 253, 254)]
        else:                  # mn = -7 s, mx = 8 s -> z = 7 (and -127 s .. 128 s -> z = 127)
            lo_end, lo_j = None, [-7, 8] + [j + 0.5 for j in range(-7, 8)]
            hi_end, hi_j = None, [-127, 128] + [j + 0.5 for j in (-127, -126, -3, -2, -1, 0, 1, 2, 126, 127)]
        lo_vals = [lo_end] if lo_end is not None else []
        lo_vals += [v * slo for v in lo_j]
        hi_vals = [hi_end] if hi_end is not None else []
        hi_vals += [v * shi for v in hi_j]
        for i in range(nlo):
            lo[i] = lo_vals[i % len(lo_vals)]
        for i in range(r):
            hi[i] = hi_vals[i % len(hi_vals)]
        rows.append(np.concatenate([lo, hi]))
    return np.array(rows)


def _pos_f16_values():
    return np.arange(1, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)


def recip_sensitive_rows(rng, nlo, r):
    """Rows whose quotients x/s are (after fp32 rounding) exact or near ties that x*(1/s) rounds the
    other way, so that an implementation multiplying by the reciprocal (forbidden by CONTRACT
    section 1) is caught. Row 0, 1: positive parts (mn = 0), the codes discriminate; row 2: the
    same negated; row 3: mn < 0 < mx chosen so that rint(-mn/s) != rint(-mn*(1/s)) (the zero)."""
    allh = _pos_f16_values()
    one = np.float32(1.0)

    def codes_part(maxq, n, sign):
        fq = np.float32(maxq)
        while True:
            mx = rng.choice(allh[(allh > 0.01) & (allh < 1000.0)])
            s = mx / fq
            x = allh[allh <= mx]
            hit = x[np.rint(x / s) != np.rint(x * (one / s))]
            if hit.size:
                break
        vals = [mx] + list(hit[: max(1, n // 4)])
        fill = rng.uniform(0.0, float(mx), size=n)
        fill[: len(vals)] = vals[:n]
        perm = rng.permutation(n)
        return sign * fill[perm]

    def zero_part(maxq, n):
        fq = np.float32(maxq)
        while True:
            mx = rng.choice(allh[(allh > 0.01) & (allh < 1000.0)])
            mn = -allh[allh < 4 * mx]
            s = (mx - mn) / fq
            bad = np.rint(-mn / s) != np.rint(-mn * (one / s))
            if bad.any():
                mn0 = mn[bad][0]
                break
        fill = rng.uniform(float(mn0), float(mx), size=n)
        fill[:2] = [mn0, mx]
        return fill[rng.permutation(n)]

    rows = []
    for sign in (1.0, 1.0, -1.0):
        rows.append(np.concatenate([codes_part(15, nlo, sign), codes_part(255, r, sign)]))
    rows.append(np.concatenate([zero_part(15, nlo), zero_part(255, r)]))
    return np.array(rows)


def offset_part(rng, n, bits):
    """Values of one part in a range far from 0 (path B: negative zero point, |q - z| > 256), drawn
    until a code clamped at maxq makes y = B(s*B(q-z)) differ from B(s*(q-z)), so the inner bf16
    rounding of the path-B dequantization is exercised."""
    for _ in range(10000):
        lo = rng.uniform(50.0, 200.0)
        width = rng.uniform(2.0, 40.0)
        v = to_f16(lo + width * rng.random(n)).astype(np.float32)[None, None, :]
        try:
            q, s, z, y = quant_part_b(v, bits, np.float32(1.0))
        except Degenerate:
            continue
        diff = q.astype(np.float32) - z.astype(np.float32)[..., None]
        y1 = rne_bf16(s[..., None] * diff)  # without the inner rounding
        if not np.array_equal(y1, y):
            return v.reshape(n).astype(np.float64)
    raise RuntimeError("offset_part: no discriminating values found")


def offset_heads(rng, M, H, hd, r, pos_head, neg_head):
    """LLM-like heads, except head pos_head (each part in a range far from 0, see offset_part)
    and head neg_head (negative-only values)."""
    x = llm_like(rng, M, H * hd)
    for m in range(M):
        x[m, pos_head * hd:pos_head * hd + hd - r] = offset_part(rng, hd - r, 4)
        x[m, pos_head * hd + hd - r:(pos_head + 1) * hd] = offset_part(rng, r, 8)
    x[:, neg_head * hd:(neg_head + 1) * hd] = -(0.05 + np.abs(rng.standard_normal((M, hd))) * 2.0)
    return x


def gen_quant_act(w, tables):
    st = STAGE_ACT
    # LLM-like per-token rows at model sizes, r = K/8
    for K in (2048, 4096, 11008, 14336):
        case = "llm_k%d" % K
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        act_case(w, case, to_f16(llm_like(rng, 3, K)), seed=seed)
    # down_proj input: LLM-like rows after the f16 Hadamard, r = 0 (uniform 4-bit)
    for K in (11008, 14336):
        case = "down_proj_k%d_r0" % K
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        xr = to_f16(llm_like(rng, 3, K))
        xh = hadamard_fp32(xr.astype(np.float32), None, tables).astype(F16)
        act_case(w, case, xh, r=0, seed=seed)
    # exact rounding ties (s exactly a power of two), half-even both ways, both signs
    act_case(w, "ties_k64_r16", to_f16(tie_rows(64, 16)), r=16)
    act_case(w, "ties_k64_r16_sub", to_f16(tie_rows(64, 16, k_lo=20, k_hi=16)), r=16)
    # quotients on which x/s and x*(1/s) round differently (codes and zeros)
    case = "div_not_recip_k64_r16"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    act_case(w, case, to_f16(recip_sensitive_rows(rng, 48, 16)), r=16, seed=seed)
    # all-zero rows (guard: z = 7 / 127)
    act_case(w, "zeros_k64_r8", np.zeros((2, 64), dtype=F16), r=8)
    # constant rows
    consts = np.array([3.5, -3.5, 0.001, -65504.0, 1.0])
    act_case(w, "const_k64_r8", to_f16(np.repeat(consts[:, None], 64, axis=1)), r=8)
    # a single non-zero (in the lo part, in the hi part, negative, tiny)
    x = np.zeros((4, 64))
    x[0, 5] = 2.75
    x[1, 60] = 100.0
    x[2, 11] = -0.3
    x[3, 63] = -2.0 ** -24
    act_case(w, "single_nonzero_k64_r8", to_f16(x), r=8)
    # tiny and odd sizes
    for K, r in ((1, 0), (1, 1), (3, 1), (7, 0), (9, 1), (9, 2), (8, 8), (16, 0)):
        case = "tiny_k%d_r%d" % (K, r)
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        act_case(w, case, to_f16(gauss(rng, 3, K)), r=r, seed=seed)
    # non-default bit widths
    for bl, bh in ((2, 6), (3, 4)):
        case = "bits_lo%d_hi%d_k64_r8" % (bl, bh)
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        act_case(w, case, to_f16(llm_like(rng, 3, 64)), r=8, bits_lo=bl, bits_hi=bh, seed=seed)
    # clip ratio 0.9
    case = "clip0p9_k256_r32"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    act_case(w, case, to_f16(llm_like(rng, 3, 256)), r=32, clip=0.9, seed=seed)
    # one negative-only row and one positive-only row
    case = "sign_only_k128_r16"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    a = np.abs(gauss(rng, 2, 128)) + 0.01
    a[0] = -a[0]
    act_case(w, case, to_f16(a), r=16, seed=seed)
    # f16 extremes: near +-65504 and subnormals
    case = "f16_extremes_k64_r8"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    big = rng.uniform(-65504.0, 65504.0, size=64)
    big[[0, 57]] = 65504.0
    big[[1, 62]] = -65504.0
    sub = rng.integers(-1023, 1024, size=64) * 2.0 ** -24   # f16 subnormals (and 0)
    sub[[3, 60]] = 1023 * 2.0 ** -24
    mix = sub.copy()
    mix[[2, 59]] = [65504.0, -60000.0]
    pos_sub = np.abs(sub) + 2.0 ** -24
    xe = np.stack([big, sub, mix, pos_sub]).astype(F16)
    assert np.all(np.isfinite(xe))
    act_case(w, case, xe, r=8, seed=seed)
    # grouped o_proj input (path A)
    for H, hd, r in ((32, 128, 16), (4, 8, 1)):
        case = "oproj_h%d_hd%d_r%d" % (H, hd, r)
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        act_case(w, case, to_f16(llm_like(rng, 3, H * hd)), group=hd, r=r, oproj=True, seed=seed)
    # H=4, hd=128, r=16 with an offset head and a negative-only head: path A and, on the same
    # input, path B (upstream parity; no constant parts, so no scale rounds to 0)
    case = "oproj_h4_hd128_r16"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    x = to_f16(offset_heads(rng, 3, 4, 128, 16, 2, 3))
    act_case(w, case, x, group=128, r=16, oproj=True, seed=seed)
    act_case(w, case + "_pathb", x, group=128, r=16, mode="path-b-bf16", oproj=True, seed=seed)


# ---- quant_kv_f16_q4q8 ----

def kv_case(w, case, x16, H, hd, r, mode="path-a", seed=0):
    T = x16.shape[0]
    assert x16.shape[1] == H * hd
    try:
        out = quantize(x16.astype(np.float32), hd, r, 4, 8, 1.0, mode)
    except Degenerate as e:
        print("skipping %s/%s: %s" % (STAGE_KV, case, e), file=sys.stderr)
        return
    params = "T=%d;H=%d;hd=%d;r=%d;bits_lo=4;bits_hi=8;clip=1;mode=%s" % (T, H, hd, r, mode)
    outs = [(nm, out[nm]) for nm in ("q_lo", "q_hi", "scale_lo", "zero_lo", "scale_hi", "zero_hi", "y")]
    w.case(STAGE_KV, case, seed, params, [("x", x16.astype(F16))], outs)


def gen_quant_kv(w):
    st = STAGE_KV
    case = "k_cache_t4_h8_hd128_r16"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    kv_case(w, case, to_f16(llm_like(rng, 4, 8 * 128)), 8, 128, 16, seed=seed)
    case = "v_cache_t4_h8_hd128_r16_pathb"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    x = offset_heads(rng, 4, 8, 128, 16, 5, 6)
    x[1, 0:128] = 0.0  # token 1, head 0 all zero: the path-B all-zero guard
    kv_case(w, case, to_f16(x), 8, 128, 16, mode="path-b-bf16", seed=seed)
    case = "t5_h2_hd64_r8"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    kv_case(w, case, to_f16(llm_like(rng, 5, 2 * 64)), 2, 64, 8, seed=seed)
    case = "zero_const_heads_t3_h4_hd32_r4"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    x = gauss(rng, 3, 4 * 32, scale=2.0)
    x[:, 0:32] = 0.0           # head 0 all zero
    x[:, 32:64] = -1.25        # head 1 constant (negative)
    x[0, 96:128] = 0.5         # row 0 head 3 constant (positive)
    kv_case(w, case, to_f16(x), 4, 32, 4, seed=seed)


# ==========================================================================
# Shared helpers of the stages below (sections 10-13)
#
# Everything that ends up in an output is computed with elementwise numpy ops (one rounding per
# op), sqrt (correctly rounded) and exact integer arithmetic only: no BLAS/LAPACK call (np.dot,
# @, np.linalg), no np.sum (pairwise order), no transcendental numpy ufunc whose SIMD version
# may differ between CPUs. So the files are the same on every x86-64 machine with this numpy,
# whatever BLAS the system has (golden_regen compares sha256).
# ==========================================================================

def seq_rowsum(e):
    """Row sums of float64 [N, n], each accumulated left to right (np.add.accumulate is the
    sequential recurrence out[j] = out[j-1] + e[j], unlike np.sum's pairwise order)."""
    return np.add.accumulate(e, axis=1)[:, -1]


def seq_sum(v):
    """Sum of a float64 vector, left to right."""
    return float(np.add.accumulate(np.asarray(v, dtype=np.float64))[-1])


def seq_matmul(A, B):
    """A [n, k] @ B [k, m] in float64, every entry summed over k ascending (a loop of outer
    products: elementwise multiply, then elementwise add)."""
    out = np.outer(A[:, 0], B[0])
    for k in range(1, A.shape[1]):
        out += np.outer(A[:, k], B[k])
    return out


def seq_outer_sum(X):
    """sum_t x_t x_t^T of X float64 [T, d], token by token in order (each product x_i x_j of two
    widened fp32 values is exact in double; only the additions round)."""
    d = X.shape[1]
    S = np.zeros((d, d))
    for t in range(X.shape[0]):
        S += np.outer(X[t], X[t])
    return S


def set_diag(A, v):
    i = np.arange(A.shape[0])
    A[i, i] = v


def to_f32_exact(a):
    """float64 -> float32, asserting the values were representable."""
    out = np.asarray(a, dtype=np.float64).astype(F32)
    assert np.array_equal(out.astype(np.float64), a)
    return out


# ==========================================================================
# Weight quantizer (CONTRACT section 10)
# ==========================================================================

W_FLOOR = np.float32(1e-5)   # fp32 constant 1e-5f
MSE_GRID = 80                # i = 0 .. 79: p = 1 - i/100 (grid 100, maxshrink 0.8)
MSE_NORM = 2.4
NEAR_TIE_REL = 1e-12


class NearTie(Exception):
    pass


def wq_maxq(bits):
    """maxq of a symmetric b-bit quantizer: 2^(b-1) - 1."""
    return (1 << (bits - 1)) - 1


def wq_codes(ws, s, bits):
    """clamp(rint(w / s), -maxq-1, maxq) in fp32, one s per row; float32 result."""
    maxq = np.float32(wq_maxq(bits))
    q = np.rint(ws / s[:, None])
    q = np.minimum(np.maximum(q, -maxq - np.float32(1)), maxq)
    assert q.dtype == np.float32
    return q


def wquant_scale(ws, bits, mse, guard=True):
    """Scale of every row of ws float32 [N, n], n >= 1 (section 10): a = max(max|w|, 1e-5f),
    RTN s = a / maxq, or the MSE clip search. With guard, raises NearTie when the search has a
    candidate whose error is within NEAR_TIE_REL of the winner's (its choice could then depend on
    the last bit of pow) unless both candidates have bit-identical |q - w| vectors."""
    ws = np.asarray(ws)
    assert ws.dtype == np.float32 and ws.ndim == 2 and ws.shape[1] >= 1
    maxq = np.float32(wq_maxq(bits))
    a = np.maximum(np.abs(ws).max(axis=1), W_FLOOR)
    if not mse:
        s = a / maxq
        assert s.dtype == np.float32
        return s
    N = ws.shape[0]
    best = np.full(N, np.inf)
    scale = np.zeros(N, dtype=np.float32)
    errs, diffs = [], []
    for i in range(MSE_GRID):
        p = np.float32(1 - i / 100)          # the double 1 - i/100 rounded to fp32
        s1 = (p * a) / maxq                  # fp32 multiply, then fp32 divide
        assert s1.dtype == np.float32
        q = s1[:, None] * wq_codes(ws, s1, bits)
        d = np.abs(q - ws)                   # fp32 subtract, exact abs
        assert d.dtype == np.float32
        err = seq_rowsum(np.power(d.astype(np.float64), MSE_NORM))  # double pow, sequential sum
        better = err < best                  # strict: the first best wins
        best = np.where(better, err, best)
        scale = np.where(better, s1, scale)
        if guard:
            errs.append(err)
            diffs.append(d)
    if guard:
        E = np.stack(errs, axis=1)
        ib = np.argmin(E, axis=1)            # first minimum = the strict-< winner
        for n in range(N):
            b = E[n, ib[n]]
            for j in np.nonzero(np.abs(E[n] - b) <= NEAR_TIE_REL * b)[0]:
                if j != ib[n] and not np.array_equal(diffs[j][n], diffs[ib[n]][n]):
                    raise NearTie("row %d: candidates %d and %d: errors %r, %r" % (n, ib[n], j, b, E[n, j]))
    return scale


def quant_weight(W, r, bits_lo, bits_hi, mse, guard=True):
    """Section 10 on W float32 [N, K]: codes int8 [N, K], scale_lo, scale_hi float32 [N] (0 for an
    empty part), w_hat float32 [N, K] = s * code (one fp32 multiply)."""
    W = np.asarray(W)
    assert W.dtype == np.float32
    N, K = W.shape
    nlo = K - r
    codes = np.zeros((N, K), dtype=np.float32)
    s_lo = np.zeros(N, dtype=np.float32)
    s_hi = np.zeros(N, dtype=np.float32)
    w_hat = np.zeros((N, K), dtype=np.float32)
    for lo, hi, bits, sl in ((0, nlo, bits_lo, s_lo), (nlo, K, bits_hi, s_hi)):
        if hi > lo:
            part = np.ascontiguousarray(W[:, lo:hi])
            sl[:] = wquant_scale(part, bits, mse, guard)
            codes[:, lo:hi] = wq_codes(part, sl, bits) + np.float32(0.0)   # integer codes: -0 -> +0
            w_hat[:, lo:hi] = sl[:, None] * codes[:, lo:hi]
    assert w_hat.dtype == np.float32
    return codes.astype(np.int8), s_lo, s_hi, w_hat


def weight_like(rng, N, K, scale=0.02, n_out=3):
    """Gaussian weight rows with a few large outlier input columns (float32)."""
    w = rng.standard_normal((N, K)) * scale
    n_out = min(K, n_out)
    cols = rng.choice(K, size=n_out, replace=False)
    w[:, cols] *= rng.uniform(5.0, 20.0, size=n_out)[None, :]
    return w.astype(F32)


# ---- quant_weight_f32 ----

NOTES = []   # seed perturbations etc., printed at the end


def qw_case(w, case, make_w, r, bits_lo=4, bits_hi=8, mse=0, seed=None):
    """make_w(rng) -> float32 [N, K]. With random data the case seed is tried first; on an MSE
    near-tie the seed is perturbed (seed + 1, ...), recorded in the manifest's seed column and in
    NOTES."""
    base = case_seed(STAGE_QW, case) if seed is None else seed
    for attempt in range(50):
        sd = (base + attempt) & 0x7FFFFFFF
        W = make_w(np.random.default_rng(sd))
        try:
            codes, s_lo, s_hi, w_hat = quant_weight(W, r, bits_lo, bits_hi, mse)
        except NearTie as e:
            if base == 0:
                raise
            NOTES.append("%s/%s: seed %d has an MSE near-tie (%s); perturbed" % (STAGE_QW, case, sd, e))
            continue
        break
    else:
        raise RuntimeError("%s: no seed without a near-tie" % case)
    N, K = W.shape
    params = "N=%d;K=%d;r=%d;bits_lo=%d;bits_hi=%d;mse=%d" % (N, K, r, bits_lo, bits_hi, mse)
    w.case(STAGE_QW, case, sd if base else 0, params, [("w", W)],
           [("codes", codes), ("scale_lo", s_lo), ("scale_hi", s_hi), ("w_hat", w_hat)])


def zero_tiny_rows(rng, K, r):
    """Rows: all zero; lo part zero; hi part zero; every |w| < 1e-5 (the floor applies); all
    equal negative; two ordinary gaussian rows."""
    rows = np.zeros((7, K))
    rows[1, K - r:] = rng.standard_normal(r) * 0.05
    rows[2, :K - r] = rng.standard_normal(K - r) * 0.05
    rows[3] = rng.uniform(-9e-6, 9e-6, size=K)
    rows[4] = -0.375
    rows[5:] = rng.standard_normal((2, K)) * 0.02
    return rows.astype(F32)


def tie_weight_rows(K, r):
    """s an exact power of two and w/s = j + 0.5 exactly (half to even both ways). Row 0: 4-bit
    part max |w| = 7/16 (s = 1/16) and values (j + 0.5)/16, j = -7..6; 8-bit part max 127/128
    (s = 1/128) and ties around -127 .. 126; row 1: the same negated; row 2: row 0 times 2^-10.
    (RTN never reaches the code -maxq-1: |w|/s <= maxq up to one rounding.)"""
    nlo = K - r
    lo_vals = [-7.0] + [j + 0.5 for j in range(-7, 7)]            # -7, -6.5 .. 6.5
    hi_vals = [127.0] + [j + 0.5 for j in (-127, -126, -64, -3, -2, -1, 0, 1, 2, 125, 126)]
    lo = np.array([lo_vals[i % len(lo_vals)] for i in range(nlo)]) / 16.0
    hi = np.array([hi_vals[i % len(hi_vals)] for i in range(r)]) / 128.0
    row = np.concatenate([lo, hi])
    return to_f32_exact(np.stack([row, -row, row * 2.0 ** -10]))


def recip_weight_rows(rng, N, K, r):
    """Rows where rint(w / s) != rint(w * (1/s)) for some values (s = a / maxq of the row's part):
    values a few ulps around (j + 0.5) s, kept where the quotient and the reciprocal product
    round to different integers; the rest gaussian below a."""
    out = np.zeros((N, K), dtype=F32)
    one = np.float32(1.0)
    for n in range(N):
        for lo, hi, maxq in ((0, K - r, 7), (K - r, K, 127)):
            a = np.float32(rng.uniform(0.01, 0.1))
            s = a / np.float32(maxq)
            hits = []
            for _ in range(100000):
                j = rng.integers(-maxq, maxq)
                base = np.float32((j + 0.5) * float(s))
                for k in range(-4, 5):
                    v = np.nextafter(base, np.float32(np.inf if k > 0 else -np.inf), dtype=F32) if k else base
                    for _i in range(abs(k) - 1):
                        v = np.nextafter(v, np.float32(np.inf if k > 0 else -np.inf), dtype=F32)
                    if abs(v) < a and np.rint(v / s) != np.rint(v * (one / s)):
                        hits.append(v)
                if len(hits) >= (hi - lo) // 4:
                    break
            vals = rng.uniform(-float(a), float(a), size=hi - lo).astype(F32)
            vals[0] = a if n % 2 == 0 else -a
            vals[1:1 + len(hits)] = hits[:hi - lo - 1]
            out[n, lo:hi] = vals[np.concatenate([[0], 1 + rng.permutation(hi - lo - 1)])]
    return out


def mse_errors(ws, bits, f32sum=False):
    """The 80 MSE candidate errors of one slice ws float32 [n]: double sums (section 10) or, with
    f32sum, the same pow values summed sequentially in fp32 (upstream's precision)."""
    maxq = np.float32(wq_maxq(bits))
    a = np.maximum(np.abs(ws).max(), W_FLOOR)
    p = np.array([1 - i / 100 for i in range(MSE_GRID)]).astype(F32)
    s1 = (p * a) / maxq
    d = np.abs(s1[:, None] * wq_codes(np.broadcast_to(ws, (MSE_GRID, ws.size)), s1, bits) - ws[None, :])
    e = np.power(d.astype(np.float64), MSE_NORM)
    if not f32sum:
        return seq_rowsum(e)
    e = e.astype(F32)
    acc = np.zeros(MSE_GRID, dtype=F32)
    for j in range(e.shape[1]):
        acc = acc + e[:, j]
    return acc


def f32sum_sensitive_rows(rng, N, K, r, bits=4):
    """Gaussian rows (with outliers) whose lo part is tuned so that the double error sum of the
    MSE search (Deviation D8) and an fp32 sum pick different p: one element is bisected (over
    fp32 values) until the two best candidates' double errors cross; of the two values around
    the crossing the one on which the fp32 sum disagrees is kept (relative error difference
    ~1e-8, far above the 1e-12 near-tie guard)."""
    rows = []
    nlo = K - r
    while len(rows) < N:
        w = weight_like(rng, 1, K)[0]
        ws = w[:nlo].copy()
        e = mse_errors(ws, bits)
        i1 = int(np.argmin(e))
        i2 = int(np.argmin(np.where(np.arange(MSE_GRID) == i1, np.inf, e)))
        amax = np.abs(ws).max()
        for k in rng.permutation(nlo)[:20]:
            if abs(ws[k]) == amax:
                continue

            def delta(v):
                t = ws.copy()
                t[k] = v
                ee = mse_errors(t, bits)
                return ee[i1] - ee[i2], t
            lo_v, hi_v = np.float32(-0.99 * amax), np.float32(0.99 * amax)
            dl, dh = delta(lo_v)[0], delta(hi_v)[0]
            if not (dl < 0) != (dh < 0):
                continue
            for _ in range(80):
                mid = np.float32((float(lo_v) + float(hi_v)) / 2)
                if mid == lo_v or mid == hi_v:
                    break
                dm = delta(mid)[0]
                if (dm < 0) == (dl < 0):
                    lo_v, dl = mid, dm
                else:
                    hi_v, dh = mid, dm
            done = False
            for v in (lo_v, hi_v):
                t = delta(v)[1]
                if int(np.argmin(mse_errors(t, bits))) != int(np.argmin(mse_errors(t, bits, f32sum=True))):
                    cand = w.copy()
                    cand[:nlo] = t
                    try:
                        quant_weight(cand[None, :], r, bits, 8, 1)
                    except NearTie:
                        continue
                    rows.append(cand)
                    done = True
                    break
            if done:
                break
    return np.stack(rows)


def gen_quant_weight(w):
    st = STAGE_QW

    def gauss_w(N, K):
        return lambda rng: weight_like(rng, N, K)

    for K, N in ((64, 16), (4096, 8)):
        base = "gauss_k%d_r%d" % (K, K // 8)
        sd = case_seed(st, base)
        qw_case(w, base, gauss_w(N, K), K // 8, seed=sd)
        qw_case(w, base + "_mse", gauss_w(N, K), K // 8, mse=1, seed=sd)
    for K, N in ((64, 16), (4096, 8)):
        base = "down_proj_k%d_r0" % K
        sd = case_seed(st, base)
        qw_case(w, base, gauss_w(N, K), 0, seed=sd)
        qw_case(w, base + "_mse", gauss_w(N, K), 0, mse=1, seed=sd)
    base = "all_hi_k64_r64"
    sd = case_seed(st, base)
    qw_case(w, base, gauss_w(16, 64), 64, seed=sd)
    qw_case(w, base + "_mse", gauss_w(16, 64), 64, mse=1, seed=sd)
    for bl, bh in ((3, 6), (2, 8)):
        base = "bits%d_%d_k64_r8" % (bl, bh)
        sd = case_seed(st, base)
        qw_case(w, base, gauss_w(16, 64), 8, bits_lo=bl, bits_hi=bh, seed=sd)
        qw_case(w, base + "_mse", gauss_w(16, 64), 8, bits_lo=bl, bits_hi=bh, mse=1, seed=sd)
    base = "zero_tiny_rows_k64_r8"
    sd = case_seed(st, base)
    qw_case(w, base, lambda rng: zero_tiny_rows(rng, 64, 8), 8, seed=sd)
    qw_case(w, base + "_mse", lambda rng: zero_tiny_rows(rng, 64, 8), 8, mse=1, seed=sd)
    qw_case(w, "ties_k64_r16", lambda rng: tie_weight_rows(64, 16), 16, seed=0)
    qw_case(w, "div_not_recip_k64_r16", lambda rng: recip_weight_rows(rng, 4, 64, 16), 16)
    qw_case(w, "f32_sum_sensitive_k256_r32_mse", lambda rng: f32sum_sensitive_rows(rng, 4, 256, 32), 32, mse=1)
    for K, r in ((1, 0), (1, 1), (9, 1), (9, 2)):
        case = "tiny_k%d_r%d_mse" % (K, r)
        qw_case(w, case, gauss_w(4, K), r, mse=1)


# ==========================================================================
# Mixed INT4/INT8 GEMM and the FP16 baseline (CONTRACT section 11)
# ==========================================================================

INT32_MAX = 2 ** 31 - 1


def unpack_nibbles(packed, G, n):
    """u8 [M, G*ceil(n/2)] -> int64 [M, G, n] (element 2i = low nibble)."""
    M = packed.shape[0]
    nb = (n + 1) // 2
    p = packed.reshape(M, G, nb).astype(np.int64)
    out = np.empty((M, G, 2 * nb), dtype=np.int64)
    out[:, :, 0::2] = p & 0xF
    out[:, :, 1::2] = p >> 4
    return out[:, :, :n]


def sext4(v):
    """Two's complement nibble [0, 15] -> [-8, 7]."""
    return (v ^ 8) - 8


def pack_weight(codes, s_lo, s_hi, K, group, r):
    """int8 codes [N, K] in the GEMM's K order (the G*(group-r) lo columns group by group, then the
    G*r hi columns) -> the canonical resq_qweight arrays of resq/gemm.h."""
    N = codes.shape[0]
    G = K // group
    nlo = group - r
    c = codes.astype(np.int64)
    lo = c[:, :G * nlo].reshape(N, G, nlo)
    hi = c[:, G * nlo:].reshape(N, G, r)
    assert lo.size == 0 or (lo.min() >= -8 and lo.max() <= 7)
    assert hi.size == 0 or (hi.min() >= -128 and hi.max() <= 127)
    return {"w_q_lo": pack_nibbles((lo & 0xF).astype(np.uint8)),
            "w_q_hi": hi.reshape(N, G * r).astype(I8),
            "w_scale_lo": np.asarray(s_lo, dtype=F32), "w_scale_hi": np.asarray(s_hi, dtype=F32),
            "w_sum_lo": lo.sum(axis=2).astype(I32), "w_sum_hi": hi.sum(axis=2).astype(I32)}


def gemm_int_parts(xq, wq, M, N, K, group, r):
    """[(part, i int64 [M, N, G], a f32 [M, G], w f32 [N])] for the non-empty parts, lo first."""
    G = K // group
    nlo = group - r
    parts = []
    for nm, n_, qx, qw in (
            ("lo", nlo, unpack_nibbles(xq["x_q_lo"], G, nlo) if nlo else None,
             sext4(unpack_nibbles(wq["w_q_lo"], G, nlo)) if nlo else None),
            ("hi", r, xq["x_q_hi"].astype(np.int64).reshape(M, G, r),
             wq["w_q_hi"].astype(np.int64).reshape(N, G, r))):
        if n_ == 0:
            continue
        acc = np.einsum("mgk,ngk->mng", qx, qw)                       # exact (int64)
        absmax = np.einsum("mgk,ngk->mng", np.abs(qx), np.abs(qw))    # bounds every partial sum
        zs = xq["x_zero_" + nm].astype(np.int64)[:, None, :] * wq["w_sum_" + nm].astype(np.int64)[None, :, :]
        i = acc - zs
        assert absmax.max() <= INT32_MAX and np.abs(zs).max() <= INT32_MAX and np.abs(i).max() <= INT32_MAX
        parts.append((nm, i, xq["x_scale_" + nm], wq["w_scale_" + nm]))
    return parts


def gemm_q4q8(xq, wq, M, N, K, group, r, bias):
    """y f32 [M, N]: terms t = (a*w)*(float)i in K order (lo of groups 0..G-1, then hi), summed
    left to right in fp32, then + bias."""
    terms = []
    for nm, i, a, wsc in gemm_int_parts(xq, wq, M, N, K, group, r):
        for g in range(i.shape[2]):
            aw = a[:, g][:, None] * wsc[None, :]
            t = aw * i[:, :, g].astype(np.float32)    # IEEE int -> fp32 conversion (RNE)
            assert t.dtype == np.float32
            terms.append(t)
    y = terms[0]
    for t in terms[1:]:
        y = y + t
    if bias is not None:
        y = y + bias[None, :]
    assert y.dtype == np.float32
    return y


def f16_of(y32):
    with np.errstate(over="ignore"):
        return y32.astype(F16)


def gemm_case(w, case, x16, group, r, W32=None, wcodes=None, ws=None, bits_lo=4, bits_hi=8, bias=None,
              seed=0, mse=0, expect_inf=False):
    """x16 f16 [M, K] in the activation's column order; the weight either W32 float32 [N, K] in the
    GEMM's K order (quantized by section 10) or given codes and scales (ws = (s_lo, s_hi))."""
    M, K = x16.shape
    G = K // group
    xq = quantize(x16.astype(np.float32), group, r, bits_lo, bits_hi, 1.0, "path-a")
    xin = {"x_q_lo": xq["q_lo"], "x_q_hi": xq["q_hi"], "x_scale_lo": xq["scale_lo"], "x_zero_lo": xq["zero_lo"],
           "x_scale_hi": xq["scale_hi"], "x_zero_hi": xq["zero_hi"]}
    if wcodes is None:
        wcodes, s_lo, s_hi, _ = quant_weight(W32, G * r, bits_lo, bits_hi, mse)
    else:
        s_lo, s_hi = ws
    N = wcodes.shape[0]
    wq = pack_weight(wcodes, s_lo, s_hi, K, group, r)
    y32 = gemm_q4q8(xin, wq, M, N, K, group, r, bias)
    y16 = f16_of(y32)
    assert np.all(np.isfinite(y32))
    if expect_inf:
        assert np.any(np.isinf(y16)) and np.any(np.isfinite(y16)), case
    else:
        assert np.all(np.isfinite(y16)), case
    params = "M=%d;N=%d;K=%d;group=%d;r=%d;bits_lo=%d;bits_hi=%d;bias=%d" % (
        M, N, K, group, r, bits_lo, bits_hi, 0 if bias is None else 1)
    ins = [(k, xin[k]) for k in ("x_q_lo", "x_q_hi", "x_scale_lo", "x_zero_lo", "x_scale_hi", "x_zero_hi")]
    ins += [(k, wq[k]) for k in ("w_q_lo", "w_q_hi", "w_scale_lo", "w_scale_hi", "w_sum_lo", "w_sum_hi")]
    # provenance (not GEMM operands): the f16 activations the x_* arrays quantize (section 3,
    # path A, this split) and the int8 weight codes in the GEMM's K order that w_* packs
    # (resq_gemm_pack_weight)
    ins += [("x_f16", x16.astype(F16)), ("w_codes", np.asarray(wcodes, dtype=I8))]
    if bias is not None:
        ins.append(("bias", np.asarray(bias, dtype=F32)))
    w.case(STAGE_GEMM, case, seed, params, ins, [("y_f32", y32), ("y_f16", y16)])


def gen_gemm(w, tables):
    st = STAGE_GEMM
    # per token (q/k/v/up/gate): group = K, r = K/8
    for M, with_bias in ((1, False), (5, True)):
        case = "per_token_k4096_r512_m%d_n64%s" % (M, "_bias" if with_bias else "")
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        x = to_f16(llm_like(rng, M, 4096))
        W = weight_like(rng, 64, 4096)
        b = (rng.standard_normal(64) * 0.5).astype(F32) if with_bias else None
        gemm_case(w, case, x, 4096, 512, W32=W, bias=b, seed=seed)
    # down_proj: r = 0 (pure INT4), input = f16 Hadamard of LLM-like rows
    case = "down_proj_k11008_r0_m2_n32"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    xh = hadamard_fp32(to_f16(llm_like(rng, 2, 11008)).astype(np.float32), None, tables).astype(F16)
    gemm_case(w, case, xh, 11008, 0, W32=weight_like(rng, 32, 11008), seed=seed)
    # grouped o_proj: group = head_dim = 128, r = 16, 32 heads; weight columns in the permuted order
    case = "oproj_h32_hd128_r16_m3_n48_bias"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    x = to_f16(llm_like(rng, 3, 4096))
    W = weight_like(rng, 48, 4096)
    gemm_case(w, case, x, 128, 16, W32=W, bias=(rng.standard_normal(48) * 0.5).astype(F32), seed=seed)
    case = "grouped_h4_hd8_r2_m3_n5"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    gemm_case(w, case, to_f16(llm_like(rng, 3, 32)), 8, 2, W32=weight_like(rng, 5, 32), seed=seed)
    # tiny and odd sizes (one group)
    for K, r, with_bias in ((1, 0, False), (9, 1, False), (9, 2, True), (16, 16, False), (16, 0, True)):
        case = "tiny_k%d_r%d_m2_n3%s" % (K, r, "_bias" if with_bias else "")
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        x = to_f16(gauss(rng, 2, K))
        W = weight_like(rng, 3, K, n_out=1)
        gemm_case(w, case, x, K, r, W32=W, bias=(rng.standard_normal(3)).astype(F32) if with_bias else None,
                  seed=seed)
    # non-default widths (bits_lo <= 4, bits_hi <= 8 are accepted by resq_gemm_check)
    case = "bits_lo3_hi6_k64_r8_m2_n4"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    gemm_case(w, case, to_f16(llm_like(rng, 2, 64)), 64, 8, W32=weight_like(rng, 4, 64), bits_lo=3, bits_hi=6,
              seed=seed)
    # int32 range: all-hi parts at K_hi = 8192 and at the limit K_hi = 32768, codes at the extremes.
    # x rows: +1 (codes 255, z = 0), -1 (codes 0, z = 255), LLM-like. Weight codes constructed
    # (section 10 never yields -128 for a row's largest value): all -128, all 127, random in
    # [100, 127] (|i| > 2^24 with low bits set: the int -> fp32 conversion rounds), random
    # in [-128, 127]. Scales: 2^-12 and 3e-4 per row.
    for K in (8192, 32768):
        case = "extreme_k%d_r%d_m3_n4" % (K, K)
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        x = np.stack([np.ones(K), -np.ones(K), llm_like(rng, 1, K)[0]])
        codes = np.stack([np.full(K, -128), np.full(K, 127), rng.integers(100, 128, size=K),
                          rng.integers(-128, 128, size=K)]).astype(np.int8)
        s_hi = np.array([2.0 ** -12, 3e-4, 2.0 ** -12, 3e-4], dtype=F32)
        gemm_case(w, case, to_f16(x), K, K, wcodes=codes, ws=(np.zeros(4, F32), s_hi), seed=seed)
    # f16 overflow: |y| > 65504 gives +-Inf in y_f16 (y_f32 finite)
    case = "f16_overflow_k64_r8_m3_n8_bias"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    x = to_f16(llm_like(rng, 3, 64) * 200.0)
    W = weight_like(rng, 8, 64, scale=2.0)
    W[0] *= 0.001   # a finite row
    gemm_case(w, case, x, 64, 8, W32=W, bias=(rng.standard_normal(8) * 10).astype(F32), seed=seed,
              expect_inf=True)


# ---- gemm_f16 ----

def gemm_f16(x16, w16, bias):
    """y = sum_k x_k w_k in fp32, k ascending (products exact), + bias; y f32 [M, N]."""
    x = x16.astype(np.float32)
    wt = w16.astype(np.float32)
    M, K = x.shape
    acc = x[:, None, 0] * wt[None, :, 0]
    acc0 = np.zeros_like(acc) + acc        # the same sum started from +0 (differs only for -0)
    for k in range(1, K):
        p = x[:, None, k] * wt[None, :, k]
        acc = acc + p
        acc0 = acc0 + p
    assert acc.dtype == np.float32
    if not np.array_equal(acc.view(np.uint32), acc0.view(np.uint32)):
        raise AssertionError("gemm_f16: a -0 sum (start value 0 vs t_0 would matter)")
    if bias is not None:
        acc = acc + bias[None, :]
    return acc


def gf16_case(w, case, x16, w16, bias=None, seed=0, expect_inf=False):
    M, K = x16.shape
    N = w16.shape[0]
    y32 = gemm_f16(x16, w16, bias)
    y16 = f16_of(y32)
    assert np.all(np.isfinite(y32))
    assert np.any(np.isinf(y16)) == expect_inf, case
    params = "M=%d;N=%d;K=%d;bias=%d" % (M, N, K, 0 if bias is None else 1)
    ins = [("x", x16.astype(F16)), ("w", w16.astype(F16))]
    if bias is not None:
        ins.append(("bias", np.asarray(bias, dtype=F32)))
    w.case(STAGE_GF16, case, seed, params, ins, [("y_f32", y32), ("y_f16", y16)])


def gen_gemm_f16(w):
    st = STAGE_GF16
    for K, M, N, with_bias in ((1, 2, 3, False), (64, 3, 5, False), (64, 2, 4, True), (4096, 2, 8, False),
                               (4096, 3, 16, True), (11008, 1, 4, False)):
        case = "k%d_m%d_n%d%s" % (K, M, N, "_bias" if with_bias else "")
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        x = to_f16(llm_like(rng, M, K))
        wt = to_f16(weight_like(rng, N, K))
        b = (rng.standard_normal(N) * 0.5).astype(F32) if with_bias else None
        gf16_case(w, case, x, wt, b, seed=seed)
    case = "overflow_k64_m2_n4"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    x = to_f16(llm_like(rng, 2, 64) * 100.0)
    wt = to_f16(rng.standard_normal((4, 64)) * np.array([[0.001], [50.0], [-50.0], [1.0]]))
    gf16_case(w, case, x, wt, seed=seed, expect_inf=True)


# ==========================================================================
# GPTQ (CONTRACT section 12), float64
# ==========================================================================

def chol_lower(A):
    """Lower Cholesky factor (right-looking, elementwise updates; raises LinAlgError if not PD)."""
    A = np.array(A, dtype=np.float64)
    n = A.shape[0]
    L = np.zeros_like(A)
    for j in range(n):
        d = A[j, j]
        if not d > 0:
            raise np.linalg.LinAlgError("not positive definite at %d" % j)
        l = math.sqrt(d)
        L[j, j] = l
        col = A[j + 1:, j] / l
        L[j + 1:, j] = col
        A[j + 1:, j + 1:] -= np.outer(col, col)
    return L


def tril_inverse(L):
    """L^-1 of a lower triangular L by forward substitution, sums in k ascending."""
    n = L.shape[0]
    X = np.zeros_like(L)
    R = np.eye(n)
    for k in range(n):
        X[k] = R[k] / L[k, k]
        R[k + 1:] -= np.outer(L[k + 1:, k], X[k])
    return X


def gptq_hessian(X32, nbatch):
    """Step 1: X float32 [B, T, K], split into nbatch calibration calls of B/nbatch sequences.
    H <- (H * n) / (n + Bc); n <- n + Bc; H <- H + (2/n) * sum_{b,t} x x^T."""
    B, T, K = X32.shape
    assert B % nbatch == 0
    per = B // nbatch
    H = np.zeros((K, K))
    n = 0
    for call in range(nbatch):
        xs = X32[call * per:(call + 1) * per].reshape(per * T, K).astype(np.float64)
        H = H * float(n) / float(n + per)
        n += per
        H = H + (2.0 / n) * seq_outer_sum(xs)
    return H


def gptq(W32, H1, r, bits_lo, bits_hi, mse, act_order, gs, blocksize, percdamp):
    """Steps 2-8 on W float32 [N, K] with the Hessian of step 1. Returns codes int8 [N, K],
    scale_lo f32 ([N], or [N, (K-r)/gs] with gs > 0), scale_hi f32 [N], Q float64 [N, K] (s*code)."""
    N, K = W32.shape
    nlo = K - r
    # 2. quantizer parameters on the original W (section 10)
    s_lo = wquant_scale(np.ascontiguousarray(W32[:, :nlo]), bits_lo, mse, guard=False) if nlo else np.zeros(N, F32)
    s_hi = wquant_scale(np.ascontiguousarray(W32[:, nlo:]), bits_hi, mse, guard=False) if r else np.zeros(N, F32)
    # 3. dead columns
    Wd = W32.astype(np.float64)
    H = H1.copy()
    dead = np.nonzero(np.diag(H) == 0)[0]
    H[dead, dead] = 1.0
    Wd[:, dead] = 0.0
    # 4. act-order (stable: ties by ascending index); quantizer by ORIGINAL index (D10)
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(K)
    Wd = Wd[:, perm]
    H = H[perm][:, perm]
    is_hi = perm >= nlo
    # 5. damping
    damp = percdamp * (seq_sum(np.diag(H)) / K)
    set_diag(H, np.diag(H) + damp)
    # 6. L = chol(H), Hinv = (L L^T)^-1, U = chol_upper(Hinv)
    Linv = tril_inverse(chol_lower(H))
    Hinv = seq_matmul(Linv.T, Linv)
    try:
        U = chol_lower(Hinv).T
    except np.linalg.LinAlgError:
        U = chol_lower(Hinv + 1e-5 * np.eye(K)).T
    # 7. block loop
    codes = np.zeros((N, K))
    Q = np.zeros((N, K))
    assert gs == 0 or (nlo % gs == 0 and not act_order)
    s_lo_g = np.zeros((N, nlo // gs if gs else 0), dtype=F32)
    cur_lo = s_lo
    for i1 in range(0, K, blocksize):
        i2 = min(i1 + blocksize, K)
        E = np.zeros((N, i2 - i1))
        for c in range(i1, i2):
            if is_hi[c]:
                s, bits = s_hi, bits_hi
            else:
                if gs and c % gs == 0:   # lo parameters on the current W[:, c:c+gs], rounded to fp32
                    cur_lo = wquant_scale(Wd[:, c:c + gs].astype(F32), bits_lo, mse, guard=False)
                    s_lo_g[:, c // gs] = cur_lo
                s, bits = cur_lo, bits_lo
            # the column's quantizer is section 10's fp32 quantizer (as upstream's, which runs in
            # fp32): the current double value rounded once to fp32, code = clamp(rint(w32 / s)) with
            # an IEEE fp32 division, dequantized value fp32(s * code); only the error feedback is double
            wc = Wd[:, c]
            code = wq_codes(wc.astype(F32)[:, None], s, bits)[:, 0].astype(np.float64) + 0.0   # no -0
            q = (s * code.astype(F32)).astype(np.float64)
            codes[:, c] = code
            Q[:, c] = q
            e = (wc - q) / U[c, c]
            Wd[:, c + 1:i2] -= np.outer(e, U[c, c + 1:i2])
            E[:, c - i1] = e
        if i2 < K:
            Wd[:, i2:] -= seq_matmul(E, U[i1:i2, i2:])
    # 8. undo the permutation
    inv = np.argsort(perm)
    return codes[:, inv].astype(np.int8), (s_lo_g if gs else s_lo), s_hi, Q[:, inv]


def gptq_objective(W32, Q32, H):
    """tr((W - Q) H (W - Q)^T) in double with the fp32 dequantized Q (the output q) and the
    original fp32 W: (W-Q)H with sums in k ascending, then an exact sum (math.fsum)."""
    D = W32.astype(np.float64) - Q32.astype(np.float64)
    return math.fsum((seq_matmul(D, H) * D).ravel().tolist())


def calib_x(rng, B, T, K, n_out=2, dead=()):
    """Correlated calibration inputs: x = z A + 0.3 z' with A [K, K] gaussian / sqrt(K), a couple
    of outlier features (x 10), optional dead (all-zero) features; float32 [B, T, K]."""
    z = rng.standard_normal((B * T, K))
    A = rng.standard_normal((K, K)) / math.sqrt(K)
    x = seq_matmul(z, A) + 0.3 * rng.standard_normal((B * T, K))
    ch = rng.choice(K, size=n_out, replace=False)
    x[:, ch] *= 10.0
    for d in dead:
        x[:, d] = 0.0
    return x.astype(F32).reshape(B, T, K)


def gptq_case(w, case, N, K, r, bits_lo=4, bits_hi=8, mse=0, act_order=0, gs=0, nbatch=4, B=4, T=128,
              dead=(), blocksize=128, percdamp=0.01):
    seed = case_seed(STAGE_GPTQ, case)
    rng = np.random.default_rng(seed)
    W = weight_like(rng, N, K)
    X = calib_x(rng, B, T, K, dead=dead)
    H1 = gptq_hessian(X, nbatch)
    codes, s_lo, s_hi, Q = gptq(W, H1, r, bits_lo, bits_hi, mse, act_order, gs, blocksize, percdamp)
    q32 = Q.astype(F32)                      # fp32(s * code): the output q (one fp32 multiply)
    w_rtn = quant_weight(W, r, bits_lo, bits_hi, mse, guard=False)[3]   # RTN: section 10, per row
    obj = np.array([gptq_objective(W, q32, H1), gptq_objective(W, w_rtn, H1)])
    assert obj[0] < obj[1], (case, obj)
    params = ("N=%d;K=%d;r=%d;bits_lo=%d;bits_hi=%d;mse=%d;act_order=%d;group_size=%d;blocksize=%d;"
              "percdamp=%s;nbatch=%d" % (N, K, r, bits_lo, bits_hi, mse, act_order, gs, blocksize,
                                         fmt_num(percdamp), nbatch))
    w.case(STAGE_GPTQ, case, seed, params, [("w", W), ("x", X)],
           [("codes", codes), ("scale_lo", s_lo), ("scale_hi", s_hi), ("q", q32),
            ("h", H1), ("objective", obj)])


def gen_gptq(w):
    gptq_case(w, "mixed_n32_k256_r32_dead", 32, 256, 32, dead=(5, 250))
    gptq_case(w, "uniform_n32_k128_r0", 32, 128, 0, nbatch=2)
    gptq_case(w, "act_order_n32_k256_r32", 32, 256, 32, act_order=1, nbatch=1)
    gptq_case(w, "group32_n32_k256_r32", 32, 256, 32, gs=32)
    gptq_case(w, "mse_n16_k128_r16", 16, 128, 16, mse=1)


# ==========================================================================
# PCA basis (CONTRACT section 13), float64
# ==========================================================================

def jacobi_eigh(A, max_sweeps=60):
    """Symmetric eigendecomposition by cyclic Jacobi rotations (round-robin ordering: each round
    rotates n/2 disjoint pairs at once). Independent of the contract's Householder + QL solver.
    Returns (eigenvalues ascending, eigenvectors as columns), before the sign convention."""
    A = np.array(A, dtype=np.float64)
    n = A.shape[0]
    V = np.eye(n)
    if n == 1:
        return A[0].copy(), V
    m = n + (n % 2)
    tiny = 1e-300

    def negligible(app, aqq, apq):
        aa = np.abs(apq)
        return (aa < tiny) | ((np.abs(app) + 100.0 * aa == np.abs(app)) & (np.abs(aqq) + 100.0 * aa == np.abs(aqq)))

    iu = np.triu_indices(n, 1)
    for _sweep in range(max_sweeps):
        dg = np.diag(A)
        if np.all(negligible(dg[iu[0]], dg[iu[1]], A[iu])):
            break
        players = list(range(m))
        for _rnd in range(m - 1):
            prs = [(players[i], players[m - 1 - i]) for i in range(m // 2)]
            players = [players[0], players[-1]] + players[1:-1]
            prs = [(min(a, b), max(a, b)) for a, b in prs if a < n and b < n]
            P = np.array([a for a, _ in prs])
            Qi = np.array([b for _, b in prs])
            app, aqq, apq = A[P, P], A[Qi, Qi], A[P, Qi]
            ng = negligible(app, aqq, apq)
            A[P[ng], Qi[ng]] = 0.0
            A[Qi[ng], P[ng]] = 0.0
            act = ~ng
            if not act.any():
                continue
            P, Qi, app, aqq, apq = P[act], Qi[act], app[act], aqq[act], apq[act]
            with np.errstate(over="ignore"):
                theta = (aqq - app) / (2.0 * apq)
                big = np.abs(theta) > 1e150
                th = np.where(big, 1.0, theta)
                t = np.where(big, 0.5 / theta, np.sign(th) / (np.abs(th) + np.sqrt(th * th + 1.0)))
            t = np.where(theta == 0, 1.0, t)
            c = 1.0 / np.sqrt(t * t + 1.0)
            s = t * c
            AP, AQ = A[P, :].copy(), A[Qi, :].copy()
            A[P, :] = c[:, None] * AP - s[:, None] * AQ
            A[Qi, :] = s[:, None] * AP + c[:, None] * AQ
            AP, AQ = A[:, P].copy(), A[:, Qi].copy()
            A[:, P] = AP * c[None, :] - AQ * s[None, :]
            A[:, Qi] = AP * s[None, :] + AQ * c[None, :]
            A[P, P] = app - t * apq
            A[Qi, Qi] = aqq + t * apq
            A[P, Qi] = 0.0
            A[Qi, P] = 0.0
            A = (A + A.T) * 0.5
            VP, VQ = V[:, P].copy(), V[:, Qi].copy()
            V[:, P] = VP * c[None, :] - VQ * s[None, :]
            V[:, Qi] = VP * s[None, :] + VQ * c[None, :]
    else:
        raise RuntimeError("jacobi_eigh: no convergence")
    w = np.diag(A).copy()
    order = np.argsort(w, kind="stable")
    return w[order], V[:, order]


def sign_convention(V):
    """Negate each column whose entry of largest magnitude (first on ties) is negative."""
    idx = np.argmax(np.abs(V), axis=0)
    neg = V[idx, np.arange(V.shape[1])] < 0
    return np.where(neg[None, :], -V, V)


def pca_basis(x32, damp):
    """S (full symmetric), eigenvalues ascending, U_pca with the sign convention."""
    X = x32.astype(np.float64)
    T, d = X.shape
    S = seq_outer_sum(X)
    C = S / float(T)
    mean = seq_sum(np.diag(C)) / d
    shift = damp * mean
    set_diag(C, np.diag(C) + shift)
    wv, V = jacobi_eigh(C)
    return S, wv, sign_convention(V)


def sign_margin_ok(U, wv, skip=()):
    """For every eigenvector not in skip: its largest |entry| exceeds the second largest by a
    relative 1e-9 (so the sign convention cannot flip between solvers)."""
    a = np.sort(np.abs(U), axis=0)
    bad = [j for j in range(U.shape[1]) if j not in skip and a[-1, j] - a[-2, j] <= 1e-9 * a[-1, j]]
    return bad


def pca_case(w, case, x32, r, damp=0.01, seed=0, degenerate=False):
    T, d = x32.shape
    S, wv, U = pca_basis(x32, damp)
    gap = (wv[d - r] - wv[d - r - 1]) / wv[-1]
    skip = (d - r - 1, d - r) if degenerate else ()
    bad = sign_margin_ok(U, wv, skip)
    assert not bad, (case, bad)
    if degenerate:
        assert gap < 1e-8, (case, gap)
    else:
        assert gap > 1e-3, (case, gap)
    params = "d=%d;r=%d;T=%d;damp=%s" % (d, r, T, fmt_num(damp))
    w.case(STAGE_PCA, case, seed, params, [("x", x32)],
           [("eigvals", wv), ("U_pca", U), ("S", S), ("gap", np.array([gap]))])


def pca_llm_x(rng, T, d, r):
    """r dominant directions (random unit vectors, amplitudes 12 .. 6) on per-channel-scaled
    gaussian noise, plus one larger axis-aligned channel; float32 [T, d]."""
    x = rng.standard_normal((T, d)) * rng.uniform(0.5, 1.5, size=d)[None, :]
    for j in range(r):
        u = rng.standard_normal(d)
        u = u / math.sqrt(math.fsum((u * u).tolist()))
        amp = 12.0 - 6.0 * j / max(1, r - 1)
        x += (rng.standard_normal(T) * amp)[:, None] * u[None, :]
    x[:, rng.integers(d)] *= 3.0
    return x.astype(F32)


def householder_dyadic(rng, d, nrefl=6):
    """A dense orthogonal matrix with dyadic entries (exact in fp32): a product of reflections
    I - v v^T / 8 with integer v, v^T v = 16 (entries 3, 2, 1, 1, 1 with random signs and places)."""
    Q = np.eye(d)
    for _ in range(nrefl):
        v = np.zeros(d)
        v[rng.choice(d, size=5, replace=False)] = np.array([3.0, 2.0, 1.0, 1.0, 1.0]) * rng.choice([-1.0, 1.0], 5)
        Q = Q - np.outer(seq_matmul(Q, v[:, None])[:, 0], v) / 8.0
    return Q


def pca_degenerate_x(rng, d, r, T=512):
    """x_t = Q (sigma * h_t) with h_t the rows of columns 1..d of the Sylvester matrix S_T
    (orthogonal +-1 columns: sum_t x x^T = T Q diag(sigma^2) Q^T exactly) and Q a dyadic
    orthogonal matrix (every x exact in fp32). sigma[d-r-1] = sigma[d-r]: the top-r subspace's
    boundary eigenvalue is double, relative gap ~ 1e-16."""
    h = sylvester_pm1(T)[:, 1:d + 1].astype(np.float64)
    sig = np.array([0.5 + 0.25 * i for i in range(d - r - 1)] + [4.0 + 2.0 * i for i in range(r)])
    sig = np.insert(sig, d - r - 1, 4.0)      # sigma[d-r-1] = sigma[d-r] = 4
    for _ in range(100):
        Q = householder_dyadic(rng, d)
        x = seq_matmul(h * sig[None, :], Q.T)
        cols = np.sort(np.abs(Q), axis=0)
        # every column's largest |entry| unique (the sign convention is then well defined),
        # except the two degenerate ones (any basis of their plane is an answer)
        ok = [j for j in range(d) if j not in (d - r - 1, d - r) and cols[-1, j] - cols[-2, j] < 1e-3]
        if not ok:
            return to_f32_exact(x)
    raise RuntimeError("pca_degenerate_x: no suitable Q")


def sylvester_pm1(m):
    s = np.ones((1, 1), dtype=np.int64)
    while s.shape[0] < m:
        s = np.block([[s, s], [s, -s]])
    return s


def rope_f32(k, theta=10000.0):
    """HF Llama rotate_half RoPE on k float32 [T, hd] at positions 0..T-1 (section 14: angle
    p*theta_i in double, cos and sin rounded to fp32, products and sums in fp32)."""
    T, hd = k.shape
    h2 = hd // 2
    cos = np.empty((T, h2), dtype=F32)
    sin = np.empty((T, h2), dtype=F32)
    for i in range(h2):
        th = math.pow(theta, -2.0 * i / hd)
        for p in range(T):
            cos[p, i] = math.cos(p * th)
            sin[p, i] = math.sin(p * th)
    a, b = k[:, :h2], k[:, h2:]
    out = np.empty_like(k)
    out[:, :h2] = a * cos - b * sin
    out[:, h2:] = b * cos + a * sin
    return out


def pca_key_x(rng, G, T, hd):
    """Post-RoPE k vectors of G KV heads, stacked head-major ([G*T, hd]: head 0's T tokens, then
    head 1's, ...): a low-rank part shared across heads with per-head amplitudes, two large
    low-frequency RoPE pairs, gaussian noise."""
    base = rng.standard_normal((4, hd))
    rows = []
    for g in range(G):
        coef = rng.standard_normal((T, 4)) * (np.array([6.0, 4.0, 3.0, 2.0]) * rng.uniform(0.7, 1.3, 4))[None, :]
        k = seq_matmul(coef, base) + 0.5 * rng.standard_normal((T, hd))
        for i in (hd // 2 - 1, hd // 2 - 3):      # low-frequency pairs carry large values
            k[:, i] += 8.0 + rng.standard_normal(T)
            k[:, i + hd // 2] += 5.0 + rng.standard_normal(T)
        rows.append(rope_f32(k.astype(F32)))
    return np.concatenate(rows, axis=0)


def gen_pca(w):
    st = STAGE_PCA
    for d in (16, 64, 256):
        case = "llm_d%d_r%d" % (d, d // 8)
        seed = case_seed(st, case)
        rng = np.random.default_rng(seed)
        pca_case(w, case, pca_llm_x(rng, 512, d, d // 8), d // 8, seed=seed)
    case = "near_degenerate_d16_r2"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    pca_case(w, case, pca_degenerate_x(rng, 16, 2), 2, seed=seed, degenerate=True)
    case = "key_basis_g4_t128_hd64_r8"
    seed = case_seed(st, case)
    rng = np.random.default_rng(seed)
    pca_case(w, case, pca_key_x(rng, 4, 128, 64), 8, seed=seed)


# ==========================================================================
# Decoder layer (CONTRACT section 14): the FP16 form and the ResQ (q4q8) form
#
# Both forms are re-implemented from the contract's text with the pieces above (sections 2, 3,
# 10, 11) and the shared ops of section 14.1, in the orders the contract pins: fp32 elementwise
# ops one rounding each, double reductions strictly sequential (np.add.accumulate or a loop of
# elementwise adds) rounded once, f16 storage by numpy's float32 -> float16 cast (RNE). The
# transcendental functions are the platform libm's, as the contract defines them: RoPE's pow,
# cos, sin and attention's exp in double through Python's math module (which calls the C
# library's pow/cos/sin/exp), and SiLU's fp32 expf through ctypes (Python has no fp32 exp, and
# numpy's float32 exp is its own SIMD code: it differs from glibc's expf on 17314 of the 63488
# finite f16 arguments here). glibc's expf is not correctly rounded everywhere (on this
# platform it differs from fp32(exp(x)) on 16 f16 arguments, EXPF_NOT_CR): the generator
# counts how many SiLU arguments of each case hit those points (a note when any does: that
# case's bits then depend on the libm's expf on that argument, not only on IEEE arithmetic).
# ==========================================================================

_EXPF_NEG = {}


def expf_neg_table():
    """[65536] float32: libm expf(-g) for the f16 value g with bit pattern i (NaN/Inf: unused),
    and the set of patterns where it differs from fp32(exp(-g)) in double."""
    if "t" in _EXPF_NEG:
        return _EXPF_NEG["t"], _EXPF_NEG["ncr"]
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("m")
    if not name:
        raise RuntimeError("layer goldens: the C math library (libm) cannot be found for expf")
    libm = ctypes.CDLL(name)
    libm.expf.restype = ctypes.c_float
    libm.expf.argtypes = [ctypes.c_float]
    g = np.arange(0x10000, dtype=np.uint32).astype(np.uint16).view(F16).astype(np.float32)
    t = np.zeros(0x10000, dtype=np.float32)
    ncr = set()
    for i in range(0x10000):
        gi = float(g[i])
        if not math.isfinite(gi):
            continue
        t[i] = libm.expf(-gi)
        with np.errstate(over="ignore"):   # exp beyond the fp32 range: +Inf, as expf
            cr = np.float32(math.exp(-gi)) if -gi < 89.0 else np.float32(np.inf)
        if t[i].tobytes() != np.float32(cr).tobytes():
            ncr.add(i)
    _EXPF_NEG["t"], _EXPF_NEG["ncr"] = t, ncr
    return t, ncr


def silu_mul(g16, u32, tag):
    """(g / (1 + expf(-g))) * u in fp32 for g given as f16 (widened exactly), u float32."""
    t, ncr = expf_neg_table()
    bits = g16.view(np.uint16)
    hits = int(np.isin(bits, np.array(sorted(ncr), dtype=np.uint16)).sum()) if ncr else 0
    if hits:
        NOTES.append("%s: %d SiLU argument(s) where libm expf is not the correctly rounded exp (selfcheck.py "
                     "checks that no output of the case depends on it)" % (tag, hits))
    e = t[bits.astype(np.int64)]
    g = g16.astype(np.float32)
    with np.errstate(over="ignore"):
        den = np.float32(1.0) + e
        s = g / den
        z = s * u32
    assert z.dtype == np.float32
    return z


def f32_of_decimal(s):
    """The fp32 value strtof(s) gives (nearest to the decimal; checked against both neighbours)."""
    from fractions import Fraction
    v = np.float32(float(s))
    fs = Fraction(s)
    for nb in (np.nextafter(v, np.float32(np.inf)), np.nextafter(v, np.float32(-np.inf))):
        assert abs(fs - Fraction(float(v))) < abs(fs - Fraction(float(nb))), s
    return v


def rmsnorm32(x, gamma, eps):
    """Section 14.1: ss = sum x_i^2 (double, i ascending; the squares are exact), ms = (float)(ss/d),
    rinv = 1.0f / sqrtf(ms + eps), (x_i * rinv) * gamma_i in fp32 (no gamma: x_i * rinv)."""
    T, d = x.shape
    x64 = x.astype(np.float64)
    ss = np.add.accumulate(x64 * x64, axis=1)[:, -1]
    ms = (ss / float(d)).astype(F32)
    rinv = np.float32(1.0) / np.sqrt(ms + eps)
    y = x * rinv[:, None]
    if gamma is not None:
        y = y * gamma[None, :]
    assert rinv.dtype == np.float32 and y.dtype == np.float32
    return y


def rope_heads(x, nheads, hd, theta):
    """Section 14.1 RoPE on x float32 [T, nheads*hd] at positions 0..T-1: omega_i = pow(theta,
    -2i/hd), angle p*omega_i in double, c = (float)cos, s = (float)sin; rotate_half in fp32."""
    T = x.shape[0]
    h2 = hd // 2
    cos = np.empty((T, h2), dtype=F32)
    sin = np.empty((T, h2), dtype=F32)
    for i in range(h2):
        om = math.pow(theta, -2.0 * i / hd)
        for p in range(T):
            ang = float(p) * om
            cos[p, i] = math.cos(ang)     # the double rounded once to fp32
            sin[p, i] = math.sin(ang)
    v = x.reshape(T, nheads, hd)
    a, b = v[:, :, :h2], v[:, :, h2:]
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty_like(v)
    out[:, :, :h2] = a * c - b * s
    out[:, :, h2:] = b * c + a * s
    assert out.dtype == np.float32
    return out.reshape(T, nheads * hd)


def attention64(q, k, v, H, G, hd):
    """Section 14.1 causal GQA attention (query head h reads KV head h / (H/G)): for query t,
    s_j = (sum_i q_i k_ji) * (1/sqrt(hd)) (double, i ascending), m = max_j s_j, p_j = exp(s_j - m),
    z = sum_{j<=t} p_j and acc = sum_{j<=t} p_j v_j (j ascending, double), o = (float)(acc / z)."""
    T = q.shape[0]
    scale = 1.0 / math.sqrt(float(hd))
    o = np.empty((T, H * hd), dtype=F32)
    rep = H // G
    for h in range(H):
        g = h // rep
        Q = q[:, h * hd:(h + 1) * hd].astype(np.float64)
        K = k[:, g * hd:(g + 1) * hd].astype(np.float64)
        V = v[:, g * hd:(g + 1) * hd].astype(np.float64)
        S = np.zeros((T, T))
        for i in range(hd):
            S = S + np.outer(Q[:, i], K[:, i])      # products of two fp32 values: exact in double
        S = S * scale
        for t in range(T):
            row = [float(S[t, j]) for j in range(t + 1)]
            m = max(row)
            p = [math.exp(sj - m) for sj in row]
            z = 0.0
            for pj in p:
                z += pj
            acc = np.zeros(hd)
            for j in range(t + 1):
                acc = acc + p[j] * V[j]
            o[t, h * hd:(h + 1) * hd] = (acc / z).astype(F32)
    return o


def gemm16_layer(x16, w16):
    """Section 11 FP16 GEMM without bias: acc = 0.0f, acc = acc + x_k * w_k for k ascending
    (products exact in fp32), then RNE_f16. x16 [T, K], w16 [N, K] -> f16 [T, N]."""
    x = x16.astype(np.float32)
    w = w16.astype(np.float32)
    acc = np.zeros((x.shape[0], w.shape[0]), dtype=F32)
    for kk in range(x.shape[1]):
        acc = acc + x[:, None, kk] * w[None, :, kk]
    assert acc.dtype == np.float32
    return f16_of(acc)


def layer_fp16_forward(cfg, W, h16, tag):
    """Section 14.2 FP16 form. cfg: dict d H G hd I theta eps(fp32); W: f16 weights, fp32 ln1/ln2."""
    H, G, hd = cfg["H"], cfg["G"], cfg["hd"]
    x = h16.astype(np.float32)
    a16 = rmsnorm32(x, W["ln1"], cfg["eps"]).astype(F16)
    q16, k16, v16 = gemm16_layer(a16, W["wq"]), gemm16_layer(a16, W["wk"]), gemm16_layer(a16, W["wv"])
    q = rope_heads(q16.astype(np.float32), H, hd, cfg["theta"])
    k = rope_heads(k16.astype(np.float32), G, hd, cfg["theta"])
    o16 = attention64(q, k, v16.astype(np.float32), H, G, hd).astype(F16)
    t16 = gemm16_layer(o16, W["wo"])
    h1 = (x + t16.astype(np.float32)).astype(F16).astype(np.float32)
    m16 = rmsnorm32(h1, W["ln2"], cfg["eps"]).astype(F16)
    g16, u16 = gemm16_layer(m16, W["wg"]), gemm16_layer(m16, W["wu"])
    z16 = silu_mul(g16, u16.astype(np.float32), tag).astype(F16)
    t16 = gemm16_layer(z16, W["wd"])
    out = (h1 + t16.astype(np.float32)).astype(F16)
    for a in (q16, k16, v16, o16, h1, g16, u16, z16, out):
        assert np.all(np.isfinite(a)), tag
    return out


LQ_WEIGHTS = ("wq", "wk", "wv", "wo", "wg", "wu", "wd")
LQ_WFILES = ("q_lo", "q_hi", "scale_lo", "scale_hi", "sum_lo", "sum_hi")
LQ_TAPS = ("a_attn", "q", "k", "v", "q_rot", "k_rot", "k_cache", "v_cache", "o", "t_o", "h_mid", "a_mlp",
           "g", "u", "z", "t_down")


def qgemm_layer(x32, split, wp):
    """Quantize x float32 [T, K] (section 3, path A, split (K, group, r), 4/8 bits, clip 1) and run
    the mixed GEMM (section 11, no bias) on the packed weight wp -> f16 [T, N]."""
    K, group, r = split
    xq = quantize(x32, group, r, 4, 8, 1.0, "path-a")
    xin = {"x_q_lo": xq["q_lo"], "x_q_hi": xq["q_hi"], "x_scale_lo": xq["scale_lo"], "x_zero_lo": xq["zero_lo"],
           "x_scale_hi": xq["scale_hi"], "x_zero_hi": xq["zero_hi"]}
    N = wp["w_scale_lo"].shape[0]
    y = f16_of(gemm_q4q8(xin, wp, x32.shape[0], N, K, group, r, None))
    assert np.all(np.isfinite(y))
    return y


def fq8_rotate64(x, nheads, hd, k8, prequant):
    """x[t][h][:] <- fq8(x[t][h][:]) . K8 (prequant: path-A all-8-bit quantize-dequantize per
    (token, head), split (hd, hd, hd)), else x . K8; out_j = (float) sum_i (double)x_i K8[i][j]
    (i ascending; the products of two fp32 values are exact in double)."""
    T = x.shape[0]
    rows = x.reshape(T * nheads, hd)
    deq = quantize(rows, hd, hd, 4, 8, 1.0, "path-a")["y"] if prequant else rows
    d64 = deq.astype(np.float64)
    k64 = k8.astype(np.float64)
    acc = np.zeros((T * nheads, hd))
    for i in range(hd):
        acc = acc + d64[:, i:i + 1] * k64[i][None, :]
    return acc.astype(F32).reshape(T, nheads * hd)


def layer_q4q8_forward(cfg, L, h16, tables, tag):
    """Section 14.4 ResQ form on a prepared layer L (packed weights, splits, k8 or None, flags).
    Returns h_out f16 and the taps of resq_layer_q4q8_forward_taps__ref (fp32)."""
    d, H, G, hd, I = cfg["d"], cfg["H"], cfg["G"], cfg["hd"], cfg["I"]
    r, rh, rdown = L["r"], L["r_h"], L["r_down"]
    qd, kd = H * hd, G * hd
    tp = {}
    x = h16.astype(np.float32)
    a = rmsnorm32(x, None, cfg["eps"])                       # fp32, unrounded, no gamma
    tp["a_attn"] = a
    q16 = qgemm_layer(a, (d, d, r), L["wq"])
    k16 = qgemm_layer(a, (d, d, r), L["wk"])
    v16 = qgemm_layer(a, (d, d, r), L["wv"])
    tp["q"], tp["k"], tp["v"] = q16.astype(np.float32), k16.astype(np.float32), v16.astype(np.float32)
    q = rope_heads(tp["q"], H, hd, cfg["theta"])
    k = rope_heads(tp["k"], G, hd, cfg["theta"])
    if L["k8"] is not None:
        pre = not L["qk_rot_no_prequant"]
        q = fq8_rotate64(q, H, hd, L["k8"], pre)
        k = fq8_rotate64(k, G, hd, L["k8"], pre)
    tp["q_rot"], tp["k_rot"] = q, k
    kc = quantize(k, hd, rh, 4, 8, 1.0, "path-a")["y"]     # KV caches: per (token, KV head)
    vc = quantize(tp["v"], hd, rh, 4, 8, 1.0, "path-a")["y"]
    tp["k_cache"], tp["v_cache"] = kc, vc
    o = attention64(q, kc, vc, H, G, hd)
    tp["o"] = o
    t16 = qgemm_layer(o, (qd, hd, rh), L["wo"])              # grouped; wo's columns permuted
    tp["t_o"] = t16.astype(np.float32)
    h1 = (x + tp["t_o"]).astype(F16).astype(np.float32)
    tp["h_mid"] = h1
    m = rmsnorm32(h1, None, cfg["eps"])
    tp["a_mlp"] = m
    g16 = qgemm_layer(m, (d, d, r), L["wg"])
    u16 = qgemm_layer(m, (d, d, r), L["wu"])
    tp["g"], tp["u"] = g16.astype(np.float32), u16.astype(np.float32)
    z = silu_mul(g16, tp["u"], tag)
    if L["online_hadamard"]:
        z = hadamard_fp32(z, None, tables)                   # fp32 in and out, no f16 rounding
    tp["z"] = z
    t16 = qgemm_layer(z, (I, I, rdown), L["wd"])
    tp["t_down"] = t16.astype(np.float32)
    out = (h1 + tp["t_down"]).astype(F16)
    assert np.all(np.isfinite(out)), tag
    for nm in LQ_TAPS:
        assert tp[nm].dtype == np.float32 and np.all(np.isfinite(tp[nm])), (tag, nm)
    return out, tp


def layer_stream(rng, T, d, n_out=2):
    """Residual-stream tokens: per-channel-scaled gaussians plus n_out outlier channels (x 8 .. 40,
    random sign), float64 before the f16 cast."""
    x = rng.standard_normal((T, d)) * np.exp(rng.normal(0.0, 0.5, size=d))[None, :]
    ch = rng.choice(d, size=n_out, replace=False)
    x[:, ch] *= (rng.uniform(8.0, 40.0, size=n_out) * rng.choice([-1.0, 1.0], size=n_out))[None, :]
    return x


def layer_weight(rng, N, K, gain):
    """gain * N(0,1) / sqrt(K) with two 4x input columns (float64)."""
    w = rng.standard_normal((N, K)) * (gain / math.sqrt(K))
    w[:, rng.choice(K, size=min(2, K), replace=False)] *= 4.0
    return w


def layer_cfg(d, H, G, hd, I, theta, eps):
    assert H * hd == d and H % G == 0 and d % 8 == 0 and hd % 8 == 0
    return {"d": d, "H": H, "G": G, "hd": hd, "I": I, "theta": float(theta), "eps_s": eps,
            "eps": f32_of_decimal(eps)}


def layer_params(cfg, T):
    return "d=%d;H=%d;G=%d;hd=%d;I=%d;T=%d;theta=%s;eps=%s" % (
        cfg["d"], cfg["H"], cfg["G"], cfg["hd"], cfg["I"], T, fmt_num(cfg["theta"]), cfg["eps_s"])


def changed_most(h_in, h_out, tag):
    """The layer must change most of the stream (a golden of an identity would be vacuous)."""
    n = int((h_in.view(np.uint16) != h_out.view(np.uint16)).sum())
    assert n > h_in.size // 2, (tag, n, h_in.size)


def lf16_case(w, case, cfg, T):
    seed = case_seed(STAGE_LF16, case)
    rng = np.random.default_rng(seed)
    d, H, G, hd, I = cfg["d"], cfg["H"], cfg["G"], cfg["hd"], cfg["I"]
    h16 = to_f16(layer_stream(rng, T, d))
    W = {"ln1": np.exp(rng.normal(0.0, 0.2, size=d)).astype(F32),
         "ln2": np.exp(rng.normal(0.0, 0.2, size=d)).astype(F32)}
    for nm, N, K, gain in (("wq", H * hd, d, 1.0), ("wk", G * hd, d, 1.0), ("wv", G * hd, d, 1.0),
                           ("wo", d, H * hd, 0.5), ("wg", I, d, 1.0), ("wu", I, d, 1.0), ("wd", d, I, 0.5)):
        W[nm] = to_f16(layer_weight(rng, N, K, gain))
    out = layer_fp16_forward(cfg, W, h16, "%s/%s" % (STAGE_LF16, case))
    changed_most(h16, out, case)
    ins = [("h_in", h16)] + [(nm, W[nm]) for nm in ("wq", "wk", "wv", "wo", "wg", "wu", "wd", "ln1", "ln2")]
    w.case(STAGE_LF16, case, seed, layer_params(cfg, T), ins, [("h_out", out)])


def householder_orth(rng, n, nrefl=4):
    """A dense orthogonal float64 matrix: a product of reflections I - 2 v v^T / (v^T v), formed with
    elementwise products and sequential sums only (no BLAS: the bits do not depend on it)."""
    Q = np.eye(n)
    for _ in range(nrefl):
        v = rng.standard_normal(n)
        vv = seq_sum(v * v)
        Q = Q - np.outer(seq_matmul(Q, v[:, None])[:, 0], v) * (2.0 / vv)
    return Q


def k8_of(Uk):
    """Section 13's K8: a = max(max|Uk|, 1e-5), s = a/127 (double), code = clamp(rint(Uk/s), -128,
    127), K8 = (float)(s * code)."""
    a = max(float(np.abs(Uk).max()), 1e-5)
    s = a / 127.0
    code = np.minimum(np.maximum(np.rint(Uk / s), -128.0), 127.0)
    return (s * code).astype(F32)


def lq_case(w, tables, case, cfg, T, method, r_down=0):
    """method: resq (r = d/8, r_h = hd/8, K8 of a random orthogonal basis after fq8, online
    Hadamard), quarot (r = r_h = 0, K8 = H_hd^T in fp32 without fq8, online Hadamard) or rtn
    (r = r_h = 0, no K8, no online Hadamard). Weights: random fp32, section 10 RTN scales
    (mse 0), packed by section 11; o_proj's columns permuted (section 5) before quantization."""
    seed = case_seed(STAGE_LQ, case)
    rng = np.random.default_rng(seed)
    d, H, G, hd, I = cfg["d"], cfg["H"], cfg["G"], cfg["hd"], cfg["I"]
    qd, kd = H * hd, G * hd
    if method == "resq":
        r, rh = d // 8, hd // 8
    else:
        r, rh = 0, 0
    L = {"r": r, "r_h": rh, "r_down": r_down, "online_hadamard": 1 if method != "rtn" else 0,
         "qk_rot_no_prequant": 1 if method == "quarot" else 0}
    h16 = to_f16(layer_stream(rng, T, d))
    if method == "resq":
        L["k8"] = k8_of(householder_orth(rng, hd))
    elif method == "quarot":
        k, m = had_dispatch(hd)
        assert k == 1
        Hd = sylvester_pm1(hd).astype(np.float64) / math.sqrt(hd)
        L["k8"] = Hd.T.astype(F32)                            # K8[i][j] = (float)H_hd[j][i]
    else:
        L["k8"] = None
    if L["online_hadamard"]:
        assert had_dispatch(I) is not None
    for nm, N, K, gain in (("wq", qd, d, 1.0), ("wk", kd, d, 1.0), ("wv", kd, d, 1.0), ("wo", d, qd, 0.5),
                           ("wg", I, d, 1.0), ("wu", I, d, 1.0), ("wd", d, I, 0.5)):
        W = layer_weight(rng, N, K, gain).astype(F32)
        if nm == "wo":
            W = np.ascontiguousarray(W[:, oproj_order(H, hd, rh)])      # GEMM K order: lo then hi
            group, rr, khi = hd, rh, H * rh
        elif nm == "wd":
            group, rr, khi = I, r_down, r_down
        else:
            group, rr, khi = d, r, r
        codes, s_lo, s_hi, _ = quant_weight(W, khi, 4, 8, 0)
        L[nm] = pack_weight(codes, s_lo, s_hi, K, group, rr)
    tag = "%s/%s" % (STAGE_LQ, case)
    out, tp = layer_q4q8_forward(cfg, L, h16, tables, tag)
    changed_most(h16, out, case)
    params = layer_params(cfg, T) + ";r=%d;r_h=%d;r_down=%d;k8=%d;qk_rot_no_prequant=%d;online_hadamard=%d" % (
        r, rh, r_down, 0 if L["k8"] is None else 1, L["qk_rot_no_prequant"], L["online_hadamard"])
    ins = [("h_in", h16)]
    if L["k8"] is not None:
        ins.append(("k8", L["k8"]))
    for nm in LQ_WEIGHTS:
        ins += [("%s_%s" % (nm, f), L[nm]["w_" + f]) for f in LQ_WFILES]
    outs = [("h_out", out)] + [("tap_" + nm, tp[nm]) for nm in LQ_TAPS]
    w.case(STAGE_LQ, case, seed, params, ins, outs)


def gen_layer(w, tables):
    # FP16 form: GQA (H 2, G 1) and MHA (H 2, G 2, theta 5e5, eps 1e-6); T = 12 and 7
    lf16_case(w, "gqa_d48_h2_g1_hd24_i64_t12", layer_cfg(48, 2, 1, 24, 64, 10000, "1e-05"), 12)
    lf16_case(w, "mha_d32_h2_g2_hd16_i40_t7", layer_cfg(32, 2, 2, 16, 40, 500000, "1e-06"), 7)
    # ResQ form: ResQ (r = d/8, r_h = hd/8, fq8 + K8, online H_96 = had12 x S_8), QuaRot-style
    # (uniform 4-bit, fp32 K8 = H_16 without fq8, online H_80 = had40 x S_2), RTN (no rotation)
    lq_case(w, tables, "resq_d64_h2_g1_hd32_i96_t8", layer_cfg(64, 2, 1, 32, 96, 10000, "1e-05"), 8, "resq")
    lq_case(w, tables, "quarot_d32_h2_g2_hd16_i80_t7", layer_cfg(32, 2, 2, 16, 80, 500000, "1e-05"), 7, "quarot")
    lq_case(w, tables, "rtn_d32_h4_g2_hd8_i40_t5", layer_cfg(32, 4, 2, 8, 40, 10000, "1e-05"), 5, "rtn")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE, help="output directory (default: the script's directory)")
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for st in STAGES:  # remove stale cases of our own stages only
        p = os.path.join(out, "data", st)
        if os.path.isdir(p):
            shutil.rmtree(p)
    tables = load_had_tables()
    w = Writer(out)
    gen_hadamard(w, tables)
    gen_quant_act(w, tables)
    gen_quant_kv(w)
    gen_quant_weight(w)
    gen_gemm(w, tables)
    gen_gemm_f16(w)
    gen_gptq(w)
    gen_pca(w)
    gen_layer(w, tables)
    w.write_manifest()
    for note in NOTES:
        print("note:", note, file=sys.stderr)
    n_cases = {st: sum(1 for (s, _) in w.cases if s == st) for st in STAGES}
    print("wrote %d files, cases: %s -> %s" % (len(w.rows), n_cases, out))


if __name__ == "__main__":
    main()
