"""Numba primitives of the CPU convolution (nbcaffe/ops/_conv_cpu.py drives them).

im2col / col2im in both orders, the image gather/scatter of chunked GEMMs, bias add and bias
gradient, the row-shift copies and sums, and the ordered sum of per-chunk partials.  Every
kernel is ``nogil`` (they run as tasks on nbcaffe.threads' pool) and ``cache=True``: all the
code they call is in this file.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

_njit = functools.partial(numba.njit, cache=True, nogil=True)


# ============================================================================ numba primitives
# p = (D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW): the canonical
# 3-D window of _conv_pool.Geometry.canonical().  Images of a chunk sit side by side along
# the columns of an NCHW col matrix (col[g, tap, i*P + position]), so one GEMM serves the
# whole chunk; in NHWC they are consecutive rows already.  Loops index flat arrays: with
# small images the per-segment cost of slicing dominated (LeNet's 8x8 im2col ran 9x slower).


@_njit
def _valid_range(off, stride, size, n_out):
    """[lo, hi): outputs o with 0 <= o*stride + off < size."""
    lo = 0
    if off < 0:
        lo = (-off + stride - 1) // stride
    if size - off <= 0:
        return lo, lo
    hi = (size - off + stride - 1) // stride
    if hi > n_out:
        hi = n_out
    if hi < lo:
        hi = lo
    return lo, hi


@functools.partial(numba.njit, nogil=True, inline="always")
def _copy_run(d, s, n):
    """d[:n] = s[:n]; runs shorter than 32 in blocks of eight (all loads, then all stores: one
    vector move each).  Short runs are what im2col copies on small images (LeNet's conv2: rows
    of 8), and a vectorised loop sends runs shorter than its vector-times-unroll width (32
    here) down its scalar tail."""
    if n >= 32:  # long runs: the vectorised loop
        for t in range(n):
            d[t] = s[t]
        return
    t = 0
    while t + 8 <= n:
        a0, a1, a2, a3 = s[t], s[t + 1], s[t + 2], s[t + 3]
        a4, a5, a6, a7 = s[t + 4], s[t + 5], s[t + 6], s[t + 7]
        d[t], d[t + 1], d[t + 2], d[t + 3] = a0, a1, a2, a3
        d[t + 4], d[t + 5], d[t + 6], d[t + 7] = a4, a5, a6, a7
        t += 8
    while t < n:
        d[t] = s[t]
        t += 1


@_njit
def im2col_nchw(x, n0, col, p, group):
    """col[g, (c, kd, kh, kw), i*P + (od, oh, ow)] = X[n0 + i, g*Cg + c, tap] (0 in padding).

    x (N, C, D, H, W); col (G, Cg*KD*KH*KW, k*P) for k images, both C-contiguous.  Each
    tap's valid output ranges are computed once; a tap that reaches into the padding
    zero-fills its row first, so the copies carry no tests.  Runs are copied between
    open-ended slices of the flat arrays (no per-row views, no end clamps: LeNet conv2's
    im2col 0.95 -> 0.45 ms) in blocks of eight.
    """
    im2col_nchw_rows(x, n0, col, p, group, 0, (x.shape[1] // group) * p[6] * p[7])


@_njit
def im2col_nchw_rows(x, n0, col, p, group, u0, u1):
    """im2col_nchw for the (c, kd, kh) tap rows u in [u0, u1) of every group only (u = (c*KD +
    kd)*KH + kh): one image's im2col split over threads (batch 1)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = x.shape[1]
    cg = C // group
    P = Do * Ho * Wo
    kP = col.shape[2]
    k = kP // P
    xf = x.reshape(-1)
    cf = col.reshape(-1)
    for g in range(group):
        for u in range(u0, u1):
            c, rest = divmod(u, KD * KH)
            kd, kh = divmod(rest, KH)
            d0, d1 = _valid_range(kd * DD - PD, SD, D, Do)
            h0, h1 = _valid_range(kh * DH - PH, SH, H, Ho)
            for kw in range(KW):
                r = (g * col.shape[1] + ((c * KD + kd) * KH + kh) * KW + kw) * kP
                off = kw * DW - PW
                lo, hi = _valid_range(off, SW, W, Wo)
                n = hi - lo
                if d0 > 0 or d1 < Do or h0 > 0 or h1 < Ho or lo > 0 or hi < Wo:
                    row = cf[r:r + kP]
                    for t in range(kP):
                        row[t] = 0
                if n <= 0:
                    continue
                for i in range(k):
                    plane = ((n0 + i) * C + g * cg + c) * D * H * W
                    for od in range(d0, d1):
                        idd = od * SD - PD + kd * DD
                        for oh in range(h0, h1):
                            src = plane + (idd * H + oh * SH - PH + kh * DH) * W + off + lo * SW
                            o = r + i * P + (od * Ho + oh) * Wo + lo
                            if SW == 1:
                                _copy_run(cf[o:], xf[src:], n)
                            else:
                                d2 = cf[o:]
                                s2 = xf[src:]
                                for t in range(n):
                                    d2[t] = s2[t * SW]


@_njit
def col2im_nchw(col, n0, dx, p, group):
    """dx[n0 + i] = the adjoint of im2col_nchw (every col entry added back to its X cell)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = dx.shape[1]
    cg = C // group
    P = Do * Ho * Wo
    kP = col.shape[2]
    k = kP // P
    df = dx.reshape(-1)
    cf = col.reshape(-1)
    for t in range(n0 * C * D * H * W, (n0 + k) * C * D * H * W):
        df[t] = 0
    for g in range(group):
        for c in range(cg):
            for kd in range(KD):
                d0, d1 = _valid_range(kd * DD - PD, SD, D, Do)
                for kh in range(KH):
                    h0, h1 = _valid_range(kh * DH - PH, SH, H, Ho)
                    for kw in range(KW):
                        r = (g * col.shape[1] + ((c * KD + kd) * KH + kh) * KW + kw) * kP
                        off = kw * DW - PW
                        lo, hi = _valid_range(off, SW, W, Wo)
                        n = hi - lo
                        if n <= 0:
                            continue
                        for i in range(k):
                            plane = ((n0 + i) * C + g * cg + c) * D * H * W
                            for od in range(d0, d1):
                                idd = od * SD - PD + kd * DD
                                for oh in range(h0, h1):
                                    dst = plane + (idd * H + oh * SH - PH + kh * DH) * W + off + lo * SW
                                    o = r + i * P + (od * Ho + oh) * Wo + lo
                                    if SW == 1:
                                        d2 = df[dst:]
                                        s2 = cf[o:]
                                        for t in range(n):
                                            d2[t] += s2[t]
                                    else:
                                        d2 = df[dst:]
                                        s2 = cf[o:]
                                        for t in range(n):
                                            d2[t * SW] += s2[t]


@_njit
def im2col_nhwc(x, n0, col, p, group):
    """col[i*P + (od, oh, ow), g, (kd, kh, kw, c)] = X[n0 + i, tap, g*Cg + c] (0 in padding).

    x (N, D, H, W, C) contiguous; col (k*P, G, KD*KH*KW*Cg).
    """
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = x.shape[4]
    cg = C // group
    P = Do * Ho * Wo
    kg = KD * KH * KW * cg
    k = col.shape[0] // P
    xf = x.reshape(-1)
    cf = col.reshape(-1)
    for i in range(k):
        for od in range(Do):
            for oh in range(Ho):
                for ow in range(Wo):
                    r = ((i * P + (od * Ho + oh) * Wo + ow) * group) * kg
                    for kd in range(KD):
                        idd = od * SD - PD + kd * DD
                        for kh in range(KH):
                            ih = oh * SH - PH + kh * DH
                            for kw in range(KW):
                                iw = ow * SW - PW + kw * DW
                                tap = ((kd * KH + kh) * KW + kw) * cg
                                if 0 <= idd < D and 0 <= ih < H and 0 <= iw < W:
                                    s = (((n0 + i) * D + idd) * H + ih) * W * C + iw * C
                                    for g in range(group):
                                        o = r + g * kg + tap
                                        d2 = cf[o:o + cg]
                                        s2 = xf[s + g * cg:s + (g + 1) * cg]
                                        for c in range(cg):
                                            d2[c] = s2[c]
                                else:
                                    for g in range(group):
                                        o = r + g * kg + tap
                                        d2 = cf[o:o + cg]
                                        for c in range(cg):
                                            d2[c] = 0


@_njit
def col2im_nhwc(col, n0, dx, p, group):
    """dx[n0 + i] = the adjoint of im2col_nhwc."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = dx.shape[4]
    cg = C // group
    P = Do * Ho * Wo
    kg = KD * KH * KW * cg
    k = col.shape[0] // P
    df = dx.reshape(-1)
    cf = col.reshape(-1)
    for t in range(n0 * D * H * W * C, (n0 + k) * D * H * W * C):
        df[t] = 0
    for i in range(k):
        for od in range(Do):
            for oh in range(Ho):
                for ow in range(Wo):
                    r = ((i * P + (od * Ho + oh) * Wo + ow) * group) * kg
                    for kd in range(KD):
                        idd = od * SD - PD + kd * DD
                        if idd < 0 or idd >= D:
                            continue
                        for kh in range(KH):
                            ih = oh * SH - PH + kh * DH
                            if ih < 0 or ih >= H:
                                continue
                            for kw in range(KW):
                                iw = ow * SW - PW + kw * DW
                                if iw < 0 or iw >= W:
                                    continue
                                tap = ((kd * KH + kh) * KW + kw) * cg
                                s = (((n0 + i) * D + idd) * H + ih) * W * C + iw * C
                                for g in range(group):
                                    o = r + g * kg + tap
                                    d2 = df[s + g * cg:s + (g + 1) * cg]
                                    s2 = cf[o:o + cg]
                                    for c in range(cg):
                                        d2[c] += s2[c]


@_njit
def gather_images(src, n0, dst):
    """dst[g, m, i*P + t] = src[n0 + i, g*Mg + m, t]: src (N, M, P), dst (G, Mg, k*P)."""
    group, mg, kp = dst.shape
    P = src.shape[2]
    for g in range(group):
        for m in range(mg):
            d = dst[g, m]
            for i in range(kp // P):
                s = src[n0 + i, g * mg + m]
                for t in range(P):
                    d[i * P + t] = s[t]


@_njit
def scatter_images(z, n0, y, b, has_bias, r, has_res, relu):
    """y[n0 + i, g*Mg + m, t] = z[g, m, i*P + t] (+ b) (+ r[n0 + i, g*Mg + m, t] when has_res),
    then max(., 0) when relu (ConvRelu, ConvSumRelu): z (G, Mg, k*P), y and r (N, M, P)."""
    group, mg, kp = z.shape
    P = y.shape[2]
    for g in range(group):
        for m in range(mg):
            s = z[g, m]
            bias = b[g * mg + m] if has_bias else 0.0
            for i in range(kp // P):
                d = y[n0 + i, g * mg + m]
                for t in range(P):
                    d[t] = s[i * P + t] + bias
                if has_res:
                    _add_row(d, r[n0 + i, g * mg + m])
                if relu:
                    _relu_row(d)


@functools.partial(numba.njit, nogil=True, inline="always")
def _add_row(d, s):
    """d += s (the residual of ConvSumRelu, added after the bias as the unfused Sum does)."""
    for t in range(d.shape[0]):
        d[t] += s[t]


@functools.partial(numba.njit, nogil=True, inline="always")
def _relu_row(d):
    """d = max(d, 0) in place with Relu's rule (NaN -> 0)."""
    for t in range(d.shape[0]):
        v = d[t]
        d[t] = v if v > 0 else 0


@_njit
def add_bias_rows(y, n0, n1, b, has_bias, r, has_res, relu, m0, m1, p0, p1):
    """y (N, M, P): y[n, m, p0:p1] += b[m] (when has_bias), then += r[n, m, p0:p1] (when
    has_res), then max(., 0) (when relu), for n in [n0, n1), m in [m0, m1) (NCHW bias; the ReLU
    of ConvRelu and the residual of ConvSumRelu ride the same pass, in the unfused ops' order of
    roundings)."""
    for n in range(n0, n1):
        for m in range(m0, m1):
            row = y[n, m, p0:p1]
            if has_res:  # bias, then residual: the unfused roundings (the row stays in L1)
                if has_bias:
                    v = b[m]
                    for t in range(row.shape[0]):
                        row[t] += v
                s = r[n, m, p0:p1]
                if relu:
                    for t in range(row.shape[0]):
                        u = row[t] + s[t]
                        row[t] = u if u > 0 else 0
                else:
                    _add_row(row, s)
            elif has_bias:
                v = b[m]
                if relu:
                    for t in range(row.shape[0]):
                        u = row[t] + v
                        row[t] = u if u > 0 else 0
                else:
                    for t in range(row.shape[0]):
                        row[t] += v
            elif relu:
                _relu_row(row)


@_njit
def add_bias_cols(y, r0, r1, b, has_bias, relu):
    """y (R, M): y[r, :] += b (when has_bias), then max(., 0) (when relu), for r in [r0, r1)
    (NHWC bias)."""
    for r in range(r0, r1):
        row = y[r]
        if has_bias:
            for t in range(row.shape[0]):
                row[t] += b[t]
        if relu:
            _relu_row(row)


@functools.partial(numba.njit, cache=True, nogil=True, fastmath={"reassoc"})
def bias_grad_rows(dy, db):
    """db[m] = sum over n, p of dy (N, M, P), summed per image then over images (the per-image
    sums may reassociate so they vectorise: 1.6 M floats took 1.6 ms as a serial chain)."""
    for m in range(dy.shape[1]):
        total = 0.0
        for n in range(dy.shape[0]):
            row = dy[n, m]
            acc = 0.0
            for t in range(row.shape[0]):
                acc += row[t]
            total += acc
        db[m] = total


@_njit
def bias_grad_cols(dy, db):
    """db[m] = sum over r of dy (R, M)."""
    acc = np.zeros(dy.shape[1], np.float64)
    for r in range(dy.shape[0]):
        row = dy[r]
        for t in range(row.shape[0]):
            acc[t] += row[t]
    for t in range(db.shape[0]):
        db[t] = acc[t]


@_njit
def rowshift_col3(img, col3, h0, group, KH, DH, PH, PW, Wp):
    """col3[g, kh*Cg + c, t*Wp + wp] = Xpad[g*Cg + c, h0 + kh*DH + t, wp] for t < col3.shape[2] // Wp.

    img (C, H, W) one image; Xpad is img zero-padded by PH rows on top, PW columns on the left
    and on the right up to the padded row length Wp (or cropped to it).  Each (kh, c) row of
    col3 is T consecutive padded image rows: the kernel-row shifts are materialised, the
    kernel-column shifts are shifts of the GEMM result.
    """
    C, H, W = img.shape
    cg = C // group
    T = col3.shape[2] // Wp
    wv = min(W, max(Wp - PW, 0))  # input columns inside the padded row (a negative tail pad crops)
    for g in range(group):
        for kh in range(KH):
            for c in range(cg):
                row = col3[g, kh * cg + c]
                plane = img[g * cg + c]
                for t in range(T):
                    ih = h0 + kh * DH + t - PH
                    dst = row[t * Wp:(t + 1) * Wp]
                    if 0 <= ih < H:
                        for j in range(PW):
                            dst[j] = 0
                        d2 = dst[PW:PW + wv]
                        s2 = plane[ih, :wv]
                        for j in range(wv):
                            d2[j] = s2[j]
                        for j in range(PW + wv, Wp):
                            dst[j] = 0
                    else:
                        for j in range(Wp):
                            dst[j] = 0


@_njit
def rowshift_sum(z, y, h0, h1, b, has_bias, KW, DW, Wp, r, has_res, relu):
    """y[g*Mg + m, h, w] = b + sum_kw z[g, kw*Mg + m, (h - h0)*Wp + w + kw*DW] for h in [h0, h1),
    then + r[g*Mg + m, h, w] when has_res (ConvSumRelu), then max(., 0) when relu (ConvRelu).

    z (G, KW*Mg, T*Wp); y (M, Ho, Wo) one image.
    """
    group = z.shape[0]
    mg = z.shape[1] // KW
    Wo = y.shape[2]
    for g in range(group):
        for m in range(mg):
            out = y[g * mg + m]
            bias = b[g * mg + m] if has_bias else 0.0
            for h in range(h0, h1):
                dst = out[h]
                base = (h - h0) * Wp
                s0 = z[g, m, base:base + Wo]
                for t in range(Wo):
                    dst[t] = s0[t] + bias
                for kw in range(1, KW):
                    off = base + kw * DW
                    s = z[g, kw * mg + m, off:off + Wo]
                    for t in range(Wo):
                        dst[t] += s[t]
                if has_res:
                    _add_row(dst, r[g * mg + m, h])
                if relu:
                    _relu_row(dst)


@_njit
def sum_partials(parts, out):
    """out = sum of parts (T, ...) over the first axis, in index order."""
    flat_out = out.reshape(-1)
    n = flat_out.shape[0]
    for t in range(n):
        flat_out[t] = 0
    for i in range(parts.shape[0]):
        src = parts[i].reshape(-1)
        for t in range(n):
            flat_out[t] += src[t]


@_njit
def add_residual(y, r, relu):
    """y = y + r, then max(., 0) when relu (ConvSumRelu where the strategy's last pass cannot
    take the residual): flat arrays of one length."""
    if relu:
        for t in range(y.shape[0]):
            u = y[t] + r[t]
            y[t] = u if u > 0 else 0
    else:
        for t in range(y.shape[0]):
            y[t] += r[t]
