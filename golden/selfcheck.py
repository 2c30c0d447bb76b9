#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Self-checks of the golden data (run after gen_golden.py).

    /usr/bin/python3 golden/selfcheck.py [--dir DIR] [--no-determinism]

1. Manifest: header, column count, sort order, unique cases, one params/seed per
   case, file exists, sha256 / dtype / shape match the .npy file.
2. hadamard_f16:
   - hadK hadK^T = K I exactly (int64) for every order; kron(hadK, S_m) orthogonal
     (n I) for every n <= 1024 in the data;
   - dispatch: recorded K, m follow the CONTRACT section 2 rule;
   - y_f32 against an exact integer evaluation of (x.s) kron(hadK,S_m)^T (the f16
     inputs are multiples of 2^-24), and for n <= 1024 also against a float64
     dense product, within gamma_{d+K+2} ||x||_1 / sqrt(n) (CONTRACT section 8);
   - y_f32 bit for bit against a scalar re-emulation that follows the contract's
     loops literally and does every fp32 operation as a float64 operation
     rounded once to fp32 (independent of numpy's float32 kernels);
   - y_f16 == RNE_f16(y_f32); the integer case is exact.
3. quant_act / quant_kv:
   - shapes per params, pad nibbles 0, codes in [0, maxq], path A zeros in
     [0, maxq], empty parts have scale 0 / zero 0;
   - codes, scales, zeros and y bit for bit against a scalar re-emulation
     (float64-then-round fp32 ops, Python round() for rint, a float64/frexp
     bf16 rounding for path B);
   - path A dequantization error inside the range within CONTRACT section 8;
   - all-zero parts give s = fp32(2/maxq), z = 7 (4-bit) / 127 (8-bit);
   - hand-checked ties (half to even, both signs);
   - o_proj order is the lo-then-hi head-major permutation and (even hd-r) the
     packed q_lo row is the permuted lo part.
4. Determinism: the generator run twice into two temporary directories gives
   identical manifests and files, equal to the checked-in manifest.
"""

import argparse
import hashlib
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep golden/ free of __pycache__
sys.path.insert(0, HERE)
import gen_golden as G  # noqa: E402  (only the table parser and constants are reused)

U = 2.0 ** -24
FAIL = []
NCHECK = {"checks": 0}


def check(cond, msg):
    NCHECK["checks"] += 1
    if not cond:
        FAIL.append(msg)
        if len(FAIL) <= 50:
            print("FAIL:", msg)


def gamma(k):
    return k * U / (1 - k * U)


# ---------------------------------------------------------------- scalar fp32 / bf16 emulation

def f32(v):
    """Round a Python float (double) to fp32, returned as a Python float."""
    return float(np.float32(v))


def bf16(v):
    """RNE to bfloat16 via frexp and Python's half-even round (independent of the generator)."""
    if v != v or v in (math.inf, -math.inf) or v == 0.0:
        return v
    m, e = math.frexp(v)           # v = m * 2^e, 0.5 <= |m| < 1
    ulp_exp = max(e - 8, -133)     # 8 significant bits; bf16 subnormal spacing 2^-133
    r = round(math.ldexp(v, -ulp_exp))  # exact scaling, half-even
    out = math.copysign(math.ldexp(r, ulp_exp), v)  # keeps the sign of a result rounded to 0
    if abs(out) >= 2.0 ** 128:
        return math.copysign(math.inf, v)
    return out


def f16r(v):
    """RNE to IEEE binary16 via frexp and Python's half-even round (independent of numpy)."""
    if v != v or v in (math.inf, -math.inf) or v == 0.0:
        return v
    m, e = math.frexp(v)
    ulp_exp = max(e - 11, -24)     # 11 significant bits; subnormal spacing 2^-24
    out = math.copysign(math.ldexp(round(math.ldexp(v, -ulp_exp)), ulp_exp), v)
    if abs(out) > 65504.0:
        return math.copysign(math.inf, v)
    return out


def rint(v):
    return float(round(v))  # Python round() of a float is half to even


# ---------------------------------------------------------------- manifest

def load_manifest(root):
    path = os.path.join(root, "MANIFEST.tsv")
    with open(path, encoding="ascii") as f:
        lines = f.read().split("\n")
    check(lines[-1] == "", "manifest ends with a newline")
    lines = lines[:-1]
    check(lines[0] == G.MANIFEST_HEADER, "manifest header")
    rows = []
    for ln in lines[1:]:
        cols = ln.split("\t")
        check(len(cols) == 9, "manifest row has 9 columns: %r" % ln)
        rows.append(dict(zip(G.MANIFEST_HEADER.split("\t"), cols)))
    keys = [(r["stage"], r["case"], r["role"], r["file"]) for r in rows]
    check(keys == sorted(keys), "manifest sorted by stage, case, role, file")
    check(len(set(keys)) == len(keys), "manifest rows unique")
    cases = {}
    for r in rows:
        check(r["stage"] in G.STAGES, "stage name %s" % r["stage"])
        check(r["role"] in ("in", "out"), "role %s" % r["role"])
        check(r["file"] == "data/%s/%s/%s" % (r["stage"], r["case"], os.path.basename(r["file"])),
              "file path layout %s" % r["file"])
        c = cases.setdefault((r["stage"], r["case"]), {"params": r["params"], "seed": r["seed"], "files": {}})
        check(c["params"] == r["params"] and c["seed"] == r["seed"], "one params/seed per case %s" % r["case"])
        fpath = os.path.join(root, r["file"])
        with open(fpath, "rb") as f:
            data = f.read()
        check(hashlib.sha256(data).hexdigest() == r["sha256"], "sha256 of %s" % r["file"])
        check(data[:8] == b"\x93NUMPY\x01\x00", "npy v1 %s" % r["file"])
        a = np.load(fpath, allow_pickle=False)
        check(a.flags["C_CONTIGUOUS"], "C order %s" % r["file"])
        check(G.DTYPE_NAMES.get(a.dtype) == r["dtype"], "dtype %s" % r["file"])
        check(",".join(str(s) for s in a.shape) == r["shape"], "shape %s" % r["file"])
        name = os.path.basename(r["file"])[:-4]
        c["files"][name] = (r["role"], a)
    return rows, cases


def parse_params(s):
    out = {}
    for kv in s.split(";"):
        k, v = kv.split("=")
        out[k] = v
    return out


# ---------------------------------------------------------------- hadamard

def sylvester(m):
    s = np.ones((1, 1), dtype=np.int64)
    while s.shape[0] < m:
        s = np.block([[s, s], [s, -s]])
    return s


def dispatch(n):
    for k in (172, 156, 140, 108, 60, 52, 36, 28, 44, 40, 20, 12):
        if n % k == 0:
            q = n // k
            return (k, q) if q & (q - 1) == 0 else None
    return (1, n) if n & (n - 1) == 0 else None


def had_scalar_row(x, signs, had, k, m, n):
    """Literal scalar emulation of CONTRACT section 2 steps 1-4 on one row (Python floats)."""
    t = [(-v if (signs is not None and signs[i] < 0) else v) for i, v in enumerate(x)]
    for c in range(k):
        base = c * m
        h = 1
        while h < m:
            for i in range(0, m, 2 * h):
                for j in range(i, i + h):
                    a, b = t[base + j], t[base + j + h]
                    t[base + j], t[base + j + h] = f32(a + b), f32(a - b)
            h *= 2
    inv = f32(1.0 / f32(math.sqrt(float(n))))
    u = [f32(v * inv) for v in t]
    if k == 1:
        return u
    y = [0.0] * n
    for a in range(k):
        row = had[a]
        for b in range(m):
            acc = u[b] if row[0] > 0 else -u[b]
            for c in range(1, k):
                acc = f32(acc + u[c * m + b]) if row[c] > 0 else f32(acc - u[c * m + b])
            y[a * m + b] = acc
    return y


def had_exact_int(x16, signs, had, k, m):
    """(x.s) kron(had,S_m)^T * 2^24 exactly in int64 (f16 values are multiples of 2^-24)."""
    rows, n = x16.shape
    X = (x16.astype(np.float64) * 2.0 ** 24)
    assert np.all(X == np.round(X))
    X = X.astype(np.int64)
    if signs is not None:
        X = X * signs.astype(np.int64)[None, :]
    t = X.reshape(rows, k, m).copy()
    h = 1
    while h < m:  # integer butterflies: exact, any order
        v = t.reshape(rows, k, m // (2 * h), 2, h)
        a, b = v[:, :, :, 0, :].copy(), v[:, :, :, 1, :].copy()
        t = np.stack([a + b, a - b], axis=3).reshape(rows, k, m)
        h *= 2
    H = had.astype(np.int64)
    z = np.einsum("ac,rcb->rab", H, t)  # exact: int64, |values| < 2^63 checked below
    assert np.abs(X).max(initial=0) * n < 2 ** 62
    return z.reshape(rows, n)


def check_hadamard(cases, tables):
    for k, had in tables.items():
        h = had.astype(np.int64)
        check(np.array_equal(h @ h.T, k * np.eye(k, dtype=np.int64)), "had%d orthogonal" % k)
    ncase = 0
    for (stage, case), c in sorted(cases.items()):
        if stage != G.STAGE_HAD:
            continue
        ncase += 1
        p = parse_params(c["params"])
        n, k, m = int(p["n"]), int(p["K"]), int(p["m"])
        check(dispatch(n) == (k, m), "%s: dispatch of n=%d gives %s, params say K=%d m=%d" % (case, n, dispatch(n), k, m))
        f = c["files"]
        x16 = f["x"][1]
        y32 = f["y_f32"][1]
        y16 = f["y_f16"][1]
        signs = f["signs"][1] if "signs" in f else None
        check((signs is not None) == (p["signs"] == "1"), "%s: signs file vs params" % case)
        if signs is not None:
            check(np.all(np.abs(signs.astype(np.int64)) == 1) and signs.shape == (n,), "%s: signs +-1" % case)
        check(x16.shape[1] == n and y32.shape == x16.shape and y16.shape == x16.shape, "%s: shapes" % case)
        check(np.all(np.isfinite(x16)), "%s: finite inputs" % case)
        check(np.array_equal(y32.astype(np.float16).view(np.uint16), y16.view(np.uint16)),
              "%s: y_f16 = RNE_f16(y_f32)" % case)
        y16s = np.array([f16r(float(v)) for v in y32.ravel()], dtype=np.float64).reshape(y32.shape)
        check(np.array_equal(y16s.astype(np.float16).view(np.uint16), y16.view(np.uint16))
              and np.array_equal(y16s, y16.astype(np.float64)), "%s: y_f16 vs frexp f16 rounding" % case)
        had = tables[k] if k > 1 else np.ones((1, 1), dtype=np.int8)
        big = kron = None
        if n <= 1024:
            kron = np.kron(had.astype(np.int64), sylvester(m))
            check(np.array_equal(kron @ kron.T, n * np.eye(n, dtype=np.int64)), "%s: kron orthogonal" % case)
        z = had_exact_int(x16, signs, had, k, m)
        ystar = z.astype(np.float64) / 2.0 ** 24 / math.sqrt(n)
        if kron is not None:
            xs = x16.astype(np.float64) * (signs.astype(np.float64)[None, :] if signs is not None else 1.0)
            ydense = xs @ kron.T.astype(np.float64) / math.sqrt(n)
            check(np.allclose(ydense, ystar, rtol=1e-12, atol=1e-9), "%s: dense float64 vs exact integer" % case)
            big = np.abs(ydense - y32.astype(np.float64))
        d = int(round(math.log2(m)))
        bound = gamma(d + k + 2) * np.abs(x16.astype(np.float64)).sum(axis=1) / math.sqrt(n)
        err = np.abs(y32.astype(np.float64) - ystar)
        check(np.all(err <= bound[:, None]), "%s: section-8 bound (max err/bound %.3g)" % (
            case, (err / np.maximum(bound[:, None], 1e-300)).max()))
        if big is not None:
            check(np.all(big <= bound[:, None] * 1.000001 + 1e-30), "%s: bound vs dense" % case)
        if case.startswith("int_exact"):
            check(np.array_equal(y32.astype(np.float64), ystar), "%s: integer case exact" % case)
        # scalar literal emulation, every row
        for row in range(x16.shape[0]):
            ys = had_scalar_row([float(v) for v in x16[row].astype(np.float32)],
                                None if signs is None else [int(s) for s in signs], had, k, m, n)
            ys = np.array(ys, dtype=np.float32)
            check(np.array_equal(ys.view(np.uint32), y32[row].view(np.uint32)),
                  "%s row %d: scalar emulation bit-exact" % (case, row))
    return ncase


# ---------------------------------------------------------------- quant

def part_scalar_a(xs, bits, clip):
    maxq = (1 << bits) - 1
    mn = min(min(xs), 0.0)
    mx = max(max(xs), 0.0)
    mn = f32(mn * clip)
    mx = f32(mx * clip)
    if mn == 0 and mx == 0:
        mn, mx = -1.0, 1.0
    s = f32(f32(mx - mn) / float(maxq))
    z = rint(f32(-mn / s))
    q = [min(max(f32(rint(f32(v / s)) + z), 0.0), float(maxq)) for v in xs]
    y = [f32(s * (int(qi) - int(z))) for qi in q]
    return [int(v) for v in q], s, int(z), y, (mn, mx)


def part_scalar_b(xs, bits, clip):
    B = bf16
    maxq = (1 << bits) - 1
    xb = [B(v) for v in xs]
    mn, mx = min(xb), max(xb)
    mn = B(f32(mn * clip))
    mx = B(f32(mx * clip))
    if mn == 0 and mx == 0:
        mn, mx = -1.0, 1.0
    d = B(f32(mx - mn))
    s = B(f32(d / float(maxq)))
    z = B(rint(B(f32(-mn / s))))
    q = [min(max(B(f32(rint(B(f32(v / s))) + z)), 0.0), float(maxq)) for v in xb]
    y = [B(f32(s * B(f32(qi - z)))) for qi in q]
    return [int(v) for v in q], s, int(z), y, (mn, mx)


def unpack_lo(packed, G_, nlo):
    M = packed.shape[0]
    nb = (nlo + 1) // 2
    p = packed.reshape(M, G_, nb)
    codes = np.empty((M, G_, 2 * nb), dtype=np.int64)
    codes[:, :, 0::2] = p & 0xF
    codes[:, :, 1::2] = p >> 4
    return codes[:, :, :nlo], codes[:, :, nlo:]


def check_quant_case(stage, case, c):
    p = parse_params(c["params"])
    f = c["files"]
    x16 = f["x"][1]
    M = x16.shape[0]
    if stage == G.STAGE_ACT:
        K, group, r = int(p["K"]), int(p["group"]), int(p["r"])
        bits_lo, bits_hi = int(p["bits_lo"]), int(p["bits_hi"])
        oproj = p["oproj"] == "1"
        check(set(p) == {"K", "group", "r", "bits_lo", "bits_hi", "clip", "mode", "oproj"}, "%s: param keys" % case)
    else:
        T, H, hd, r = int(p["T"]), int(p["H"]), int(p["hd"]), int(p["r"])
        K, group, bits_lo, bits_hi = H * hd, hd, int(p["bits_lo"]), int(p["bits_hi"])
        check(T == M, "%s: T" % case)
        oproj = False
        check(set(p) == {"T", "H", "hd", "r", "bits_lo", "bits_hi", "clip", "mode"}, "%s: param keys" % case)
    clip = float(np.float32(float(p["clip"])))
    mode = p["mode"]
    check(mode in ("path-a", "path-b-bf16"), "%s: mode" % case)
    check(x16.shape == (M, K) and K % group == 0 and 0 <= r <= group, "%s: x shape/params" % case)
    Gn = K // group
    nlo = group - r
    maxlo, maxhi = (1 << bits_lo) - 1, (1 << bits_hi) - 1
    nb = (nlo + 1) // 2
    expect = {"q_lo": (M, Gn * nb), "q_hi": (M, Gn * r), "scale_lo": (M, Gn), "zero_lo": (M, Gn),
              "scale_hi": (M, Gn), "zero_hi": (M, Gn), "y": (M, K)}
    for nm, shp in expect.items():
        check(nm in f and f[nm][1].shape == shp and f[nm][0] == "out", "%s: %s shape %s" % (case, nm, shp))
    check(("order" in f) == oproj, "%s: order file iff oproj" % case)
    q_lo, pad = unpack_lo(f["q_lo"][1], Gn, nlo)
    check(np.all(pad == 0), "%s: pad nibbles are 0" % case)
    q_hi = f["q_hi"][1].reshape(M, Gn, r).astype(np.int64)
    check(np.all(q_lo <= maxlo) and np.all(q_hi <= maxhi), "%s: codes in [0, maxq]" % case)
    y = f["y"][1].reshape(M, Gn, group)
    x32 = x16.astype(np.float32).reshape(M, Gn, group)
    part_fn = part_scalar_a if mode == "path-a" else part_scalar_b
    for nm_s, nm_z, q, lo0, n_, bits in (("scale_lo", "zero_lo", q_lo, 0, nlo, bits_lo),
                                         ("scale_hi", "zero_hi", q_hi, nlo, r, bits_hi)):
        S = f[nm_s][1]
        Z = f[nm_z][1]
        maxq = (1 << bits) - 1
        if n_ == 0:
            check(np.all(S == 0) and np.all(Z == 0), "%s: empty part %s zeros" % (case, nm_s))
            continue
        if mode == "path-a":
            check(np.all((Z >= 0) & (Z <= maxq)), "%s: path A zero in [0, maxq]" % case)
        bad = 0
        for mrow in range(M):
            for g in range(Gn):
                xs = [float(v) for v in x32[mrow, g, lo0:lo0 + n_]]
                qs, s, z, ys, (mn, mx) = part_fn(xs, bits, clip)
                ok = (np.array_equal(np.array(qs), q[mrow, g])
                      and np.float32(s).view(np.uint32) == S[mrow, g].view(np.uint32)
                      and z == int(Z[mrow, g])
                      and np.array_equal(np.array(ys, dtype=np.float32).view(np.uint32),
                                         y[mrow, g, lo0:lo0 + n_].view(np.uint32)))
                if not ok:
                    bad += 1
                if mode == "path-a":
                    sv = float(S[mrow, g])
                    xa = np.array(xs)
                    ya = y[mrow, g, lo0:lo0 + n_].astype(np.float64)
                    inside = (xa >= mn) & (xa <= mx)
                    lim = sv / 2 + 2 * U * (np.abs(xa) + sv * maxq)
                    check(np.all(np.abs(ya - xa)[inside] <= lim[inside]),
                          "%s: section-8 dequant bound row %d group %d %s" % (case, mrow, g, nm_s))
                    if all(v == 0 for v in xs):
                        check(float(S[mrow, g]) == float(np.float32(2.0) / np.float32(maxq))
                              and int(Z[mrow, g]) == {15: 7, 255: 127}.get(maxq, int(Z[mrow, g])),
                              "%s: all-zero part s=fp32(2/maxq), z=7/127" % case)
        check(bad == 0, "%s: %s: %d (row, group) parts differ from the scalar emulation" % (case, nm_s, bad))
    if oproj:
        order = f["order"][1]
        H_, hd_ = K // group, group
        exp = [h * hd_ + j for h in range(H_) for j in range(hd_ - r)] + \
              [h * hd_ + hd_ - r + j for h in range(H_) for j in range(r)]
        check(np.array_equal(order, np.array(exp)), "%s: o_proj order" % case)
        check(np.array_equal(np.sort(order), np.arange(K)), "%s: order is a permutation" % case)
        if nlo % 2 == 0:
            codes = np.concatenate([q_lo.reshape(M, -1), q_hi.reshape(M, -1)], axis=1)  # permuted order
            lo_perm = codes[:, :Gn * nlo]
            repacked = (lo_perm[:, 0::2] | (lo_perm[:, 1::2] << 4)).astype(np.uint8)
            check(np.array_equal(repacked, f["q_lo"][1]), "%s: packed q_lo = permuted lo part" % case)
    return M


def check_ties(cases):
    c = cases[(G.STAGE_ACT, "ties_k64_r16")]
    f = c["files"]
    q_lo, _ = unpack_lo(f["q_lo"][1], 1, 48)
    q_hi = f["q_hi"][1].astype(np.int64)
    x = f["x"][1].astype(np.float64)
    s_lo, s_hi = 2.0 ** -4, 2.0 ** -4
    n_even = n_odd = 0
    for row, z_lo, z_hi in ((0, 0, 0), (1, 15, 255), (2, 7, 127)):
        check(float(f["scale_lo"][1][row, 0]) == s_lo and int(f["zero_lo"][1][row, 0]) == z_lo,
              "ties row %d lo s, z" % row)
        check(float(f["scale_hi"][1][row, 0]) == s_hi and int(f["zero_hi"][1][row, 0]) == z_hi,
              "ties row %d hi s, z" % row)
        for col in range(64):
            v = x[row, col] / (s_lo if col < 48 else s_hi)
            if v != math.floor(v) + 0.5:
                continue
            fl = math.floor(v)
            exp = fl if fl % 2 == 0 else fl + 1   # by hand: half to even
            if fl % 2 == 0:
                n_even += 1
            else:
                n_odd += 1
            got = (q_lo[row, 0, col] - z_lo) if col < 48 else (q_hi[row, col - 48] - z_hi)
            check(int(got) == exp, "ties row %d col %d: x/s=%g -> %d, got %d" % (row, col, v, exp, got))
    check(n_even > 10 and n_odd > 10, "ties exercise both even and odd floors (%d, %d)" % (n_even, n_odd))
    # a few spelled out: lo part of row 0 is 15/16, then 0.5/16, 1.5/16, 2.5/16 ...
    check([int(v) for v in q_lo[0, 0, :5]] == [15, 0, 2, 2, 4], "ties row 0 by hand: %s" % q_lo[0, 0, :5])
    # row 1 (negative, z = 15): -15/16, -0.5/16 -> 15+(-0)=15, -1.5/16 -> 15-2=13, -2.5/16 -> 13
    check([int(v) for v in q_lo[1, 0, :4]] == [0, 15, 13, 13], "ties row 1 by hand: %s" % q_lo[1, 0, :4])


def check_zero_case(cases):
    f = cases[(G.STAGE_ACT, "zeros_k64_r8")]["files"]
    check(np.all(f["zero_lo"][1] == 7) and np.all(f["zero_hi"][1] == 127), "all-zero rows: z = 7 / 127")
    check(np.all(f["scale_lo"][1] == np.float32(2) / np.float32(15))
          and np.all(f["scale_hi"][1] == np.float32(2) / np.float32(255)), "all-zero rows: s = fp32(2/maxq)")
    q_lo, _ = unpack_lo(f["q_lo"][1], 1, 56)
    check(np.all(q_lo == 7) and np.all(f["q_hi"][1] == 127) and np.all(f["y"][1] == 0), "all-zero rows: codes = z, y = 0")
    f = cases[(G.STAGE_KV, "zero_const_heads_t3_h4_hd32_r4")]["files"]
    check(np.all(f["zero_lo"][1][:, 0] == 7) and np.all(f["zero_hi"][1][:, 0] == 127), "kv all-zero head: z = 7 / 127")


def check_division_sanity():
    """numpy float32 / + - * are IEEE correctly rounded (compare with double-then-round)."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(200000) * np.exp(np.clip(rng.normal(0, 20, 200000), -100, 85))).astype(np.float32)
    b = (rng.standard_normal(200000) * np.exp(np.clip(rng.normal(0, 20, 200000), -100, 85))).astype(np.float32)
    a = np.concatenate([a, np.float32(2.0 ** -140) * np.arange(1, 1001, dtype=np.float32)])
    b = np.concatenate([b, np.full(1000, 3, dtype=np.float32)])
    with np.errstate(over="ignore", under="ignore"):
        for name, op in (("div", np.divide), ("add", np.add), ("sub", np.subtract), ("mul", np.multiply)):
            r32 = op(a, b)
            r64 = op(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
            check(np.array_equal(r32.view(np.uint32), r64.view(np.uint32)), "numpy float32 %s is correctly rounded" % name)
        v = (rng.standard_normal(100000) * 100).astype(np.float32)
        check(np.array_equal(np.rint(v), np.array([round(float(t)) for t in v], dtype=np.float32)), "np.rint is half-even")
        t = np.arange(-20, 20, dtype=np.float32) + np.float32(0.5)
        check(np.array_equal(np.rint(t), np.array([round(float(w)) for w in t], dtype=np.float32)), "np.rint ties")


def check_bf16_impls():
    """Generator's integer bf16 rounding vs the frexp/round() version here."""
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2 ** 32, size=100000, dtype=np.uint64).astype(np.uint32)
    v = bits.view(np.float32)
    v = v[np.isfinite(v)]
    extra = np.array([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x7F7F8000, 0x00008000, 0x00018000, 0x80008000,
                      0x00000001, 0xBF808000], dtype=np.uint32).view(np.float32)
    v = np.concatenate([v, extra])
    g = G.rne_bf16(v)
    s = np.array([bf16(float(t)) for t in v], dtype=np.float32)
    check(np.array_equal(g.view(np.uint32), s.view(np.uint32)), "bf16 rounding: integer vs frexp implementation")


# ---------------------------------------------------------------- discrimination

def had_variant(x32, signs, had, k, m, n, variant):
    """A deliberately wrong Hadamard (one contract rule broken); float32 numpy."""
    f = np.float32
    t = x32 if signs is None else np.where(signs[None, :] < 0, -x32, x32).astype(f)
    rows = t.shape[0]
    t = t.reshape(rows, k, m)
    hs = []
    h = 1
    while h < m:
        hs.append(h)
        h *= 2
    if variant == "desc_strides":
        hs = hs[::-1]
    for h in hs:
        v = t.reshape(rows, k, m // (2 * h), 2, h)
        a, b = v[:, :, :, 0, :], v[:, :, :, 1, :]
        t = np.stack([a + b, a - b], axis=3).reshape(rows, k, m)
    inv = f(1.0 / float(np.sqrt(f(n))))
    if variant == "inv_double":
        inv = f(1.0 / math.sqrt(n))
    u = t if variant == "scale_last" else t * inv
    if k == 1:
        y = u
    elif variant in ("fma_mix", "exact_mix"):
        src = t.astype(np.float64) * float(inv) if variant == "fma_mix" else u.astype(np.float64)
        H = had.astype(np.float64)
        if variant == "fma_mix":   # acc = fl(acc +- t_c*inv): product exact in double
            acc = (H[:, 0][None, :, None] * src[:, 0:1, :]).astype(f)
            for c in range(1, k):
                acc = (acc.astype(np.float64) + H[:, c][None, :, None] * src[:, c:c + 1, :]).astype(f)
            y = acc
        else:                      # correctly rounded (double) sum
            y = np.einsum("ac,rcb->rab", H, src).astype(f)
    else:
        order = list(range(k))[::-1] if variant == "reverse_mix" else list(range(k))
        c0 = order[0]
        acc = np.where((had[:, c0] > 0)[None, :, None], u[:, c0:c0 + 1, :], -u[:, c0:c0 + 1, :]).astype(f)
        for c in order[1:]:
            uc = u[:, c:c + 1, :]
            acc = np.where((had[:, c] > 0)[None, :, None], acc + uc, acc - uc)
        y = acc
    if variant == "scale_last":
        y = y * inv
    return y.reshape(rows, n).astype(f)


def rne_bf16_np(v):
    return np.array([bf16(float(t)) for t in np.asarray(v, dtype=np.float32).ravel()],
                    dtype=np.float32).reshape(np.shape(v))


def quant_variant(xp, bits, clip, mode, variant):
    """A deliberately wrong quantizer part on xp float32 [M, G, n]: returns q, s, z, y."""
    f = np.float32
    fq = f((1 << bits) - 1)
    one = f(1.0)
    with np.errstate(all="ignore"):
        if mode == "path-a":
            if variant == "range_without_0":
                mn, mx = xp.min(-1), xp.max(-1)
            else:
                mn, mx = np.minimum(xp.min(-1), f(0)), np.maximum(xp.max(-1), f(0))
            mn, mx = mn * clip, mx * clip
            gd = (mn == 0) & (mx == 0)
            mn, mx = np.where(gd, f(-1), mn), np.where(gd, f(1), mx)
            s = (mx - mn) * (one / fq) if variant == "recip_s" else (mx - mn) / fq
            z = np.rint(-mn * (one / s)) if variant == "recip_z" else np.rint(-mn / s)
            quo = xp * (one / s)[..., None] if variant == "recip_q" else xp / s[..., None]
            rq = np.sign(quo) * np.floor(np.abs(quo) + f(0.5)) if variant == "half_away" else np.rint(quo)
            q = np.clip(rq + z[..., None], f(0), fq)
            if variant == "two_mul_dequant":
                y = s[..., None] * q - s[..., None] * z[..., None]
            else:
                y = s[..., None] * (q - z[..., None])
            return q, s, z, y.astype(f)
        B = rne_bf16_np
        I = (lambda v: v)
        xb = xp if variant == "no_input_round" else B(xp)
        if variant == "range_with_0":
            mn, mx = np.minimum(xb.min(-1), f(0)), np.maximum(xb.max(-1), f(0))
        else:
            mn, mx = xb.min(-1), xb.max(-1)
        mn, mx = B(mn * clip), B(mx * clip)
        gd = (mn == 0) & (mx == 0)
        mn, mx = np.where(gd, f(-1), mn), np.where(gd, f(1), mx)
        d = (I if variant == "no_round_d" else B)(mx - mn)
        s = B(d / fq)
        z = B(np.rint(B(-mn / s)))
        quo = (I if variant == "no_round_quotient" else B)(xb / s[..., None])
        q = np.clip(B(np.rint(quo) + z[..., None]), f(0), fq)
        inner = (I if variant == "no_inner_round_dequant" else B)(q - z[..., None])
        y = B(s[..., None] * inner)
        return q, s, z, y


def golden_parts(c, stage):
    """Yield (xp, bits, clip, mode, q, s, z, y) for each non-empty part of a quant case."""
    p = parse_params(c["params"])
    f = c["files"]
    x16 = f["x"][1]
    M, K = x16.shape
    group = int(p["group"]) if stage == G.STAGE_ACT else int(p["hd"])
    r = int(p["r"])
    Gn, nlo = K // group, group - int(p["r"])
    clip = np.float32(float(p["clip"]))
    x32 = x16.astype(np.float32).reshape(M, Gn, group)
    y = f["y"][1].reshape(M, Gn, group)
    q_lo, _ = unpack_lo(f["q_lo"][1], Gn, nlo)
    q_hi = f["q_hi"][1].reshape(M, Gn, r)
    if nlo:
        yield (x32[:, :, :nlo], int(p["bits_lo"]), clip, p["mode"], q_lo, f["scale_lo"][1],
               f["zero_lo"][1], y[:, :, :nlo])
    if r:
        yield (x32[:, :, nlo:], int(p["bits_hi"]), clip, p["mode"], q_hi, f["scale_hi"][1],
               f["zero_hi"][1], y[:, :, nlo:])


def check_discrimination(cases, tables):
    """Each deliberately wrong implementation must change some golden output (else the goldens
    could not catch that mistake). Prints which cases catch each one."""
    had_variants = ("desc_strides", "reverse_mix", "inv_double", "scale_last", "fma_mix", "exact_mix")
    for var in had_variants:
        caught = []
        for (stage, case), c in sorted(cases.items()):
            if stage != G.STAGE_HAD:
                continue
            p = parse_params(c["params"])
            n, k, m = int(p["n"]), int(p["K"]), int(p["m"])
            f = c["files"]
            signs = f["signs"][1] if "signs" in f else None
            had = tables[k] if k > 1 else np.ones((1, 1), dtype=np.int8)
            yv = had_variant(f["x"][1].astype(np.float32), signs, had, k, m, n, var)
            if not np.array_equal(yv.view(np.uint32), f["y_f32"][1].view(np.uint32)):
                caught.append(case)
        print("discrimination hadamard %-22s caught by %2d cases %s" % (var, len(caught), caught[:4]))
        check(len(caught) > 0, "hadamard variant %s is caught by some case" % var)
    for mode, variants in (("path-a", ("recip_q", "recip_s", "recip_z", "half_away", "range_without_0",
                                       "two_mul_dequant")),
                           ("path-b-bf16", ("no_input_round", "range_with_0", "no_round_d",
                                            "no_round_quotient", "no_inner_round_dequant"))):
        for var in variants:
            caught = []
            for (stage, case), c in sorted(cases.items()):
                if stage not in (G.STAGE_ACT, G.STAGE_KV) or parse_params(c["params"])["mode"] != mode:
                    continue
                for xp, bits, clip, md, q, s, z, y in golden_parts(c, stage):
                    qv, sv, zv, yv = quant_variant(xp, bits, clip, md, var)
                    same = (np.array_equal(qv, q.astype(np.float32)) and np.array_equal(sv, s)
                            and np.array_equal(zv, z.astype(np.float32))
                            and np.array_equal(yv.astype(np.float32).view(np.uint32), y.view(np.uint32)))
                    if not same:
                        caught.append(stage[6:9] + ":" + case)
                        break
            print("discrimination %-11s %-22s caught by %2d cases %s" % (mode, var, len(caught), caught[:3]))
            check(len(caught) > 0, "%s variant %s is caught by some case" % (mode, var))


def check_determinism(root):
    gen = os.path.join(HERE, "gen_golden.py")
    outs = []
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        for d in (d1, d2):
            subprocess.run([sys.executable, gen, "--out", d], check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(d, "MANIFEST.tsv"), "rb") as f:
                outs.append(f.read())
        check(outs[0] == outs[1], "determinism: two runs give identical manifests")
        same = True
        for ln in outs[0].decode().split("\n")[1:]:
            if not ln:
                continue
            rel = ln.split("\t")[2]
            with open(os.path.join(d1, rel), "rb") as f1, open(os.path.join(d2, rel), "rb") as f2:
                same &= f1.read() == f2.read()
        check(same, "determinism: two runs give identical files")
    with open(os.path.join(root, "MANIFEST.tsv"), "rb") as f:
        check(f.read() == outs[0], "checked-in MANIFEST.tsv equals a fresh run")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=HERE)
    ap.add_argument("--no-determinism", action="store_true")
    args = ap.parse_args()
    tables = G.load_had_tables()
    rows, cases = load_manifest(args.dir)
    check_division_sanity()
    check_bf16_impls()
    nh = check_hadamard(cases, tables)
    nq = {G.STAGE_ACT: 0, G.STAGE_KV: 0}
    for (stage, case), c in sorted(cases.items()):
        if stage in nq:
            check_quant_case(stage, case, c)
            nq[stage] += 1
    check_ties(cases)
    check_zero_case(cases)
    check_discrimination(cases, tables)
    if not args.no_determinism:
        check_determinism(args.dir)
    print("cases: %s=%d %s=%d %s=%d, files=%d, checks=%d, failures=%d" % (
        G.STAGE_HAD, nh, G.STAGE_ACT, nq[G.STAGE_ACT], G.STAGE_KV, nq[G.STAGE_KV], len(rows),
        NCHECK["checks"], len(FAIL)))
    sys.exit(1 if FAIL else 0)


if __name__ == "__main__":
    main()
