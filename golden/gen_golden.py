#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Golden-data generator for the resq kernels.

An independent numpy re-implementation of ref/CONTRACT.md sections 1-5. It
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
DTYPE_NAMES = {F16: "f16", F32: "f32", U8: "u8", I8: "i8", I32: "i32"}

STAGE_HAD = "hadamard_f16"
STAGE_ACT = "quant_act_f16_q4q8"
STAGE_KV = "quant_kv_f16_q4q8"
STAGES = (STAGE_HAD, STAGE_ACT, STAGE_KV)

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
    w.write_manifest()
    n_cases = {st: sum(1 for (s, _) in w.cases if s == st) for st in STAGES}
    print("wrote %d files, cases: %s -> %s" % (len(w.rows), n_cases, out))


if __name__ == "__main__":
    main()
