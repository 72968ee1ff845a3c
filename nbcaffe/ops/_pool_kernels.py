"""Numba kernels of the CPU pooling ops (nbcaffe/ops/pooling.py drives them over the task pool).

Max and average pooling and their gradients in both orders, the 2x2/2 and tiled-window fast
paths, and MaxPoolWithIndex's gradient.  Every kernel is ``nogil`` and ``cache=True`` (all the
code they call is in this file).  The max rule everywhere: the window in row-major order, the
first maximum wins ties, the first NaN wins over numbers.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

_njit = functools.partial(numba.njit, cache=True, nogil=True)


# ============================================================================ CPU kernels
# x is a 5-D view: (N*C, D, H, W) planes with a leading plane axis for NCHW (rank 4 view
# with the plane axis first) or (N, D, H, W, C) for NHWC.  p: the 18 canonical window ints.


@_njit
def _bounds(o, s, pad, k, d, size):
    """First tap index, tap count... of output o along one dim: taps t with 0 <= o*s - pad + t*d < size."""
    start = o * s - pad
    t0 = 0
    if start < 0:
        t0 = (-start + d - 1) // d
    t1 = k
    last = size - 1 - start  # largest t*d allowed
    if last < 0:
        t1 = 0
    elif last // d + 1 < k:
        t1 = last // d + 1
    return start, t0, t1


@_njit
def _valid(off, stride, size, n_out):
    """[lo, hi): outputs o with 0 <= o*stride + off < size."""
    lo = 0
    if off < 0:
        lo = (-off + stride - 1) // stride
    if size - off <= 0:
        return lo, lo
    hi = min(n_out, (size - off + stride - 1) // stride)
    return lo, max(lo, hi)


@_njit
def _row_max(plane, od, oh, out, p):
    """out[ow] = max (NaN propagating) of every window of output row (od, oh) of one plane."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
    sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
    for t in range(Wo):
        out[t] = -np.inf
    for kd in range(d0, d1):
        for kh in range(h0, h1):
            row = plane[sd + kd * DD, sh + kh * DH]
            for kw in range(KW):
                off = kw * DW - PW
                lo, hi = _valid(off, SW, W, Wo)
                if SW == 1:
                    seg = row[lo + off:hi + off]
                    acc = out[lo:hi]
                    for t in range(hi - lo):
                        v = seg[t]
                        b = acc[t]
                        acc[t] = v if (v > b or v != v) else b
                else:
                    for t in range(lo, hi):
                        v = row[t * SW + off]
                        b = out[t]
                        out[t] = v if (v > b or v != v) else b


@_njit
def _row_argmax(plane, od, oh, best, where, p):
    """best[ow], where[ow]: each window's first maximum (first NaN) and its flat spatial index."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
    sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
    for t in range(Wo):
        where[t] = -1
    # taps in row-major (kd, kh, kw) order for every output of the row at once
    for kd in range(d0, d1):
        idd = sd + kd * DD
        for kh in range(h0, h1):
            ih = sh + kh * DH
            row = plane[idd, ih]
            base = (idd * H + ih) * W
            for kw in range(KW):
                off = kw * DW - PW
                lo, hi = _valid(off, SW, W, Wo)
                for t in range(lo, hi):
                    v = row[t * SW + off]
                    b = best[t]
                    if where[t] < 0 or v > b or (v != v and b == b):
                        best[t] = v
                        where[t] = base + t * SW + off


@_njit
def max_pool_nchw(x, y, mask, want_mask, p):
    """y[q, o] = max of plane q's window o (first max / first NaN wins); mask = its flat index.

    x (Q, D, H, W) planes, y (Q, Do, Ho, Wo), mask (Q*Do*Ho*Wo,) when want_mask.
    """
    Do, Ho, Wo = p[3], p[4], p[5]
    where = np.empty(Wo, np.int64)
    for q in range(x.shape[0]):
        plane = x[q]
        for od in range(Do):
            for oh in range(Ho):
                out = y[q, od, oh]
                if want_mask:
                    _row_argmax(plane, od, oh, out, where, p)
                    base = ((q * Do + od) * Ho + oh) * Wo
                    for t in range(Wo):
                        mask[base + t] = where[t]
                else:
                    _row_max(plane, od, oh, out, p)


@_njit
def tiled(p):
    """Windows tile the image without overlap or padding (kernel = stride, no pads, dilation 1,
    every window inside): the common 2x2/2 case, which gets branch-light loops."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    return (KD == SD and KH == SH and KW == SW and PD == 0 and PH == 0 and PW == 0 and DD == 1 and DH == 1
            and DW == 1 and Do * KD <= D and Ho * KH <= H and Wo * KW <= W)


@_njit
def max_pool_tiled_nchw(x, y, p):
    """max_pool_nchw's values for tiled windows: per output row, a running max over the taps."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    for q in range(x.shape[0]):
        for od in range(Do):
            for oh in range(Ho):
                out = y[q, od, oh]
                first = True
                for kd in range(KD):
                    for kh in range(KH):
                        row = x[q, od * KD + kd, oh * KH + kh, :Wo * KW].reshape(Wo, KW)
                        for kw in range(KW):
                            if first:
                                for t in range(Wo):
                                    out[t] = row[t, kw]
                                first = False
                            else:
                                for t in range(Wo):
                                    v = row[t, kw]
                                    b = out[t]
                                    out[t] = v if (v > b or v != v) else b


@_njit
def max_pool_grad_tiled_nchw(x, dy, dx, p):
    """max_pool_grad_nchw for tiled windows: every dx cell is written once (dy at the window's
    first maximum, 0 elsewhere), so no zero-fill pass and no scatter."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    best = np.empty(Wo, x.dtype)
    where = np.empty(Wo, np.int64)
    for q in range(x.shape[0]):
        if Do * KD < D or Ho * KH < H or Wo * KW < W:
            dx[q] = 0  # cells outside every window
        for od in range(Do):
            for oh in range(Ho):
                tap = 0
                for kd in range(KD):
                    for kh in range(KH):
                        row = x[q, od * KD + kd, oh * KH + kh, :Wo * KW].reshape(Wo, KW)
                        for kw in range(KW):
                            if tap == 0:
                                for t in range(Wo):
                                    best[t] = row[t, 0]
                                    where[t] = 0
                            else:
                                for t in range(Wo):
                                    v = row[t, kw]
                                    b = best[t]
                                    take = v > b or (v != v and b == b)
                                    best[t] = v if take else b
                                    where[t] = tap if take else where[t]
                            tap += 1
                g = dy[q, od, oh]
                tap = 0
                for kd in range(KD):
                    for kh in range(KH):
                        grow = dx[q, od * KD + kd, oh * KH + kh, :Wo * KW].reshape(Wo, KW)
                        for kw in range(KW):
                            for t in range(Wo):
                                grow[t, kw] = g[t] if where[t] == tap else 0
                            tap += 1


@_njit
def max_pool_2x2_nchw(x, y):
    """Tiled 2x2 windows (stride 2, no pads): x (Q, D, H, W) planes, y (Q, D, Ho, Wo), both
    C-contiguous.  Per output row: the vertical maxima of the two input rows (a contiguous,
    vectorised pass), then the maxima of adjacent pairs.  NaN wins every comparison it is in,
    so a window with a NaN gives NaN (which NaN is immaterial)."""
    Q, D, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    tv = np.empty(2 * Wo, x.dtype)
    for q in range(Q * D):
        for oh in range(Ho):
            b0 = (q * H + 2 * oh) * W
            r0 = xf[b0:b0 + 2 * Wo]
            r1 = xf[b0 + W:b0 + W + 2 * Wo]
            for j in range(2 * Wo):
                a = r0[j]
                b = r1[j]
                tv[j] = a if (a >= b) | (a != a) else b
            out = yf[(q * Ho + oh) * Wo:(q * Ho + oh + 1) * Wo]
            for t in range(Wo):
                a = tv[2 * t]
                b = tv[2 * t + 1]
                out[t] = a if (a >= b) | (a != a) else b


@_njit
def separable(p):
    """Windows max_pool_rows_nchw serves: 2-D (one depth), no dilation."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    return D == 1 and KD == 1 and Do == 1 and DH == 1 and DW == 1 and PW >= 0


@_njit
def max_pool_rows_nchw(x, y, p):
    """2-D max pooling of planes by separable row passes (any kernel, stride and pads; Caffe's
    ceil-mode windows included): per output row, the maximum of the window's input rows (a
    contiguous pass per row into a buffer padded with -inf by PW in front and up to the last
    window's end behind), then for each kernel column one pass over the outputs reading the
    buffer at stride SW.  x (Q, 1, H, W) planes, y (Q, 1, Ho, Wo), C-contiguous.  NaN wins
    every comparison it is in (a window with a NaN gives NaN), as max_pool_2x2_nchw; equal
    values may come from another cell of the window (only the sign of a zero can tell).
    """
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    Q = x.shape[0]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    Wb = max((Wo - 1) * SW + KW, PW + W)
    tv = np.empty(Wb, x.dtype)
    ninf = -np.inf
    for j in range(Wb):
        tv[j] = ninf
    wv = min(W, Wb - PW)
    buf = tv[PW:PW + wv]
    for q in range(Q):
        for oh in range(Ho):
            h0 = max(0, oh * SH - PH)
            h1 = min(H, oh * SH - PH + KH)
            b0 = (q * H + h0) * W
            r0 = xf[b0:b0 + wv]
            for j in range(wv):
                buf[j] = r0[j]
            for h in range(h0 + 1, h1):
                r = xf[(q * H + h) * W:(q * H + h) * W + wv]
                for j in range(wv):
                    a = buf[j]
                    b = r[j]
                    buf[j] = a if (a >= b) | (a != a) else b
            out = yf[(q * Ho + oh) * Wo:(q * Ho + oh + 1) * Wo]
            if SW == 1:  # 0-based slices: the passes vectorise
                for t in range(Wo):
                    out[t] = tv[t]
                for kw in range(1, KW):
                    s = tv[kw:kw + Wo]
                    for t in range(Wo):
                        a = out[t]
                        b = s[t]
                        out[t] = a if (a >= b) | (a != a) else b
                continue
            for t in range(Wo):
                out[t] = tv[t * SW]
            for kw in range(1, KW):
                for t in range(Wo):
                    a = out[t]
                    b = tv[t * SW + kw]
                    out[t] = a if (a >= b) | (a != a) else b


@_njit
def _grad_2x2_exact(r0, r1, g0, g1, g, Wo, zero):
    """One row of 2x2 windows, window by window: dy to the first maximum in row-major order (the
    first NaN if any), 0 to the other three cells."""
    for t in range(Wo):
        a = r0[2 * t]
        b = r0[2 * t + 1]
        c = r1[2 * t]
        e = r1[2 * t + 1]
        m = a
        m = b if ((b > m) | ((b != b) & (m == m))) else m
        m = c if ((c > m) | ((c != c) & (m == m))) else m
        m = e if ((e > m) | ((e != e) & (m == m))) else m
        nan = m != m
        t0 = (a == m) | (nan & (a != a))
        t1 = ((b == m) | (nan & (b != b))) & ~t0
        t2 = ((c == m) | (nan & (c != c))) & ~(t0 | t1)
        t3 = ~(t0 | t1 | t2)
        v = g[t]
        g0[2 * t] = v if t0 else zero
        g0[2 * t + 1] = v if t1 else zero
        g1[2 * t] = v if t2 else zero
        g1[2 * t + 1] = v if t3 else zero


@functools.partial(numba.njit, cache=True, nogil=True, fastmath={"reassoc"})
def _nonfinite_probe(r0, r1, n):
    """Σ (v - v) over two rows: 0 when every value is finite, NaN otherwise (reassociated so
    it vectorises; NaN still propagates)."""
    s = r0[0] - r0[0]
    for j in range(n):
        s += (r0[j] - r0[j]) + (r1[j] - r1[j])
    return s


@_njit
def max_pool_grad_2x2_nchw(x, dy, dx, zero):
    """Gradient of max_pool_2x2_nchw: each dx cell written once (dy at the first maximum of its
    window in row-major order, the first NaN if any, else 0); zero: a 0 of dx's dtype.

    Fast pass per output row, on contiguous loops: the window maxima (as the forward), spread
    back to both input columns with dy, then every input cell equal to its window's maximum
    gets dy.  That is exact when each window has one maximum and no NaN/inf, which the pass
    checks (winners counted, non-finite values probed); rows that fail are redone window by
    window after the pass (a call inside the pass kept it from vectorising: 1.4 vs 0.5 ms).
    """
    Q, D, H, W = x.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    xf = x.reshape(-1)
    df = dx.reshape(-1)
    gf = dy.reshape(-1)
    mx = np.empty(2 * Wo, x.dtype)
    gx = np.empty(2 * Wo, x.dtype)
    redo = np.zeros(Q * D * Ho, np.bool_)
    for q in range(Q * D):
        if 2 * Ho < H or 2 * Wo < W:
            for j in range(q * H * W, (q + 1) * H * W):
                df[j] = zero  # cells outside every window
        for oh in range(Ho):
            b0 = (q * H + 2 * oh) * W
            r0 = xf[b0:b0 + 2 * Wo]
            r1 = xf[b0 + W:b0 + W + 2 * Wo]
            g0 = df[b0:b0 + 2 * Wo]
            g1 = df[b0 + W:b0 + W + 2 * Wo]
            g = gf[(q * Ho + oh) * Wo:(q * Ho + oh + 1) * Wo]
            for j in range(2 * Wo):
                a = r0[j]
                b = r1[j]
                mx[j] = a if a >= b else b
            for t in range(Wo):
                a = mx[2 * t]
                b = mx[2 * t + 1]
                m = a if a >= b else b
                mx[2 * t] = m
                mx[2 * t + 1] = m
                gx[2 * t] = g[t]
                gx[2 * t + 1] = g[t]
            winners = 0
            for j in range(2 * Wo):
                m = mx[j]
                v = gx[j]
                k0 = r0[j] == m
                k1 = r1[j] == m
                g0[j] = v if k0 else zero
                g1[j] = v if k1 else zero
                winners += (1 if k0 else 0) + (1 if k1 else 0)
            if winners + _nonfinite_probe(r0, r1, 2 * Wo) != Wo:
                redo[q * Ho + oh] = True
    for i in range(Q * D * Ho):
        if redo[i]:
            q, oh = i // Ho, i % Ho
            b0 = (q * H + 2 * oh) * W
            _grad_2x2_exact(xf[b0:b0 + 2 * Wo], xf[b0 + W:b0 + W + 2 * Wo], df[b0:b0 + 2 * Wo],
                            df[b0 + W:b0 + W + 2 * Wo], gf[i * Wo:(i + 1) * Wo], Wo, zero)


@_njit
def max_pool_nhwc(x, y, mask, want_mask, p):
    """NHWC max pooling, vectorised over channels; mask as max_pool_nchw (spatial index)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = x.shape[4]
    where = np.empty(C, np.int32)
    for n in range(x.shape[0]):
        img = x[n]
        for od in range(Do):
            sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
            for oh in range(Ho):
                sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
                for ow in range(Wo):
                    sw, w0, w1 = _bounds(ow, SW, PW, KW, DW, W)
                    best = y[n, od, oh, ow]
                    first = True
                    for kd in range(d0, d1):
                        idd = sd + kd * DD
                        for kh in range(h0, h1):
                            ih = sh + kh * DH
                            for kw in range(w0, w1):
                                iw = sw + kw * DW
                                src = img[idd, ih, iw]
                                flat = (idd * H + ih) * W + iw
                                if first:
                                    for c in range(C):
                                        best[c] = src[c]
                                        where[c] = flat
                                    first = False
                                else:
                                    for c in range(C):
                                        v = src[c]
                                        b = best[c]
                                        if v > b or (v != v and b == b):
                                            best[c] = v
                                            where[c] = flat
                    if want_mask:
                        base = (((n * Do + od) * Ho + oh) * Wo + ow) * C
                        for c in range(C):
                            mask[base + c] = where[c]


@_njit
def _counts(o, s, pad, k, d, size):
    sd, t0, t1 = _bounds(o, s, pad, k, d, size)
    return t1 - t0


@_njit
def _width_counts(p, include_pad):
    """Per output column: how many kernel columns fall in the image (1.0 everywhere with
    include_pad, whose divisor is the kernel volume instead)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    counts = np.empty(Wo, np.float64)
    for t in range(Wo):
        counts[t] = 1.0 if include_pad else _counts(t, SW, PW, KW, DW, W)
    return counts


@_njit
def avg_pool_nchw(x, y, include_pad, p):
    """y[q, o] = mean of plane q's window o over image cells (or / kernel volume)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    wcount = _width_counts(p, include_pad)
    acc = np.empty(Wo, np.float64)
    for q in range(x.shape[0]):
        plane = x[q]
        for od in range(Do):
            sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
            for oh in range(Ho):
                sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
                acc[:] = 0.0
                for kd in range(d0, d1):
                    for kh in range(h0, h1):
                        row = plane[sd + kd * DD, sh + kh * DH]
                        for kw in range(KW):
                            off = kw * DW - PW
                            lo, hi = _valid(off, SW, W, Wo)
                            if SW == 1:
                                seg = row[lo + off:hi + off]
                                a = acc[lo:hi]
                                for t in range(hi - lo):
                                    a[t] += seg[t]
                            else:
                                for t in range(lo, hi):
                                    acc[t] += row[t * SW + off]
                scale = KD * KH * KW if include_pad else (d1 - d0) * (h1 - h0)
                out = y[q, od, oh]
                for t in range(Wo):
                    out[t] = acc[t] / (scale * wcount[t])


@_njit
def avg_pool_rows_nchw(x, y, include_pad, p):
    """avg_pool_nchw's means by separable row passes (2-D, no dilation: ``separable``): per
    output row, the float64 sum of the window's input rows into a buffer zero-padded by PW in
    front and up to the last window's end behind, then for each kernel column one pass over the
    outputs reading it at stride SW, then the divisor."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    Q = x.shape[0]
    wcount = _width_counts(p, include_pad)
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    Wb = max((Wo - 1) * SW + KW, PW + W)
    tv = np.zeros(Wb, np.float64)
    acc = np.empty(Wo, np.float64)
    wv = min(W, Wb - PW)
    buf = tv[PW:PW + wv]
    for q in range(Q):
        for oh in range(Ho):
            h0 = max(0, oh * SH - PH)
            h1 = min(H, oh * SH - PH + KH)
            r0 = xf[(q * H + h0) * W:(q * H + h0) * W + wv]
            for j in range(wv):
                buf[j] = r0[j]
            for h in range(h0 + 1, h1):
                r = xf[(q * H + h) * W:(q * H + h) * W + wv]
                for j in range(wv):
                    buf[j] += r[j]
            for t in range(Wo):
                acc[t] = tv[t * SW]
            for kw in range(1, KW):
                for t in range(Wo):
                    acc[t] += tv[t * SW + kw]
            scale = KH * KW if include_pad else h1 - h0
            out = yf[(q * Ho + oh) * Wo:(q * Ho + oh + 1) * Wo]
            for t in range(Wo):
                out[t] = acc[t] / (scale * wcount[t])


@_njit
def avg_pool_nhwc(x, y, include_pad, p):
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = x.shape[4]
    full = KD * KH * KW
    acc = np.empty(C, np.float64)
    for n in range(x.shape[0]):
        img = x[n]
        for od in range(Do):
            sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
            for oh in range(Ho):
                sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
                for ow in range(Wo):
                    sw, w0, w1 = _bounds(ow, SW, PW, KW, DW, W)
                    acc[:] = 0.0
                    for kd in range(d0, d1):
                        for kh in range(h0, h1):
                            for kw in range(w0, w1):
                                src = img[sd + kd * DD, sh + kh * DH, sw + kw * DW]
                                for c in range(C):
                                    acc[c] += src[c]
                    count = full if include_pad else (d1 - d0) * (h1 - h0) * (w1 - w0)
                    dst = y[n, od, oh, ow]
                    for c in range(C):
                        dst[c] = acc[c] / count


@_njit
def max_pool_grad_nchw(x, dy, dx, p):
    """dx[argmax of window o] += dy[o] per plane (argmax as max_pool_nchw)."""
    Do, Ho, Wo = p[3], p[4], p[5]
    best = np.empty(Wo, x.dtype)
    where = np.empty(Wo, np.int64)
    dx[...] = 0
    for q in range(x.shape[0]):
        plane = x[q]
        gflat = dx[q].reshape(-1)
        for od in range(Do):
            for oh in range(Ho):
                _row_argmax(plane, od, oh, best, where, p)
                g = dy[q, od, oh]
                for t in range(Wo):
                    gflat[where[t]] += g[t]


@_njit
def max_pool_grad_nhwc(x, dy, dx, p):
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = x.shape[4]
    best = np.empty(C, x.dtype)
    where = np.empty(C, np.int64)
    dx[...] = 0
    for n in range(x.shape[0]):
        img = x[n]
        flat_dx = dx[n].reshape(-1)
        for od in range(Do):
            sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
            for oh in range(Ho):
                sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
                for ow in range(Wo):
                    sw, w0, w1 = _bounds(ow, SW, PW, KW, DW, W)
                    first = True
                    for kd in range(d0, d1):
                        idd = sd + kd * DD
                        for kh in range(h0, h1):
                            ih = sh + kh * DH
                            for kw in range(w0, w1):
                                iw = sw + kw * DW
                                src = img[idd, ih, iw]
                                flat = ((idd * H + ih) * W + iw) * C
                                if first:
                                    for c in range(C):
                                        best[c] = src[c]
                                        where[c] = flat + c
                                    first = False
                                else:
                                    for c in range(C):
                                        v = src[c]
                                        b = best[c]
                                        if v > b or (v != v and b == b):
                                            best[c] = v
                                            where[c] = flat + c
                    g = dy[n, od, oh, ow]
                    for c in range(C):
                        flat_dx[where[c]] += g[c]


@_njit
def avg_pool_grad_nchw(dy, dx, include_pad, p):
    """dx[window o] += dy[o] / count(o), per plane."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    wcount = _width_counts(p, include_pad)
    g = np.empty(Wo, np.float64)
    dx[...] = 0
    for q in range(dx.shape[0]):
        gplane = dx[q]
        for od in range(Do):
            sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
            for oh in range(Ho):
                sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
                scale = KD * KH * KW if include_pad else (d1 - d0) * (h1 - h0)
                src = dy[q, od, oh]
                for t in range(Wo):
                    g[t] = src[t] / (scale * wcount[t])
                for kd in range(d0, d1):
                    for kh in range(h0, h1):
                        row = gplane[sd + kd * DD, sh + kh * DH]
                        for kw in range(KW):
                            off = kw * DW - PW
                            lo, hi = _valid(off, SW, W, Wo)
                            if SW == 1:
                                seg = row[lo + off:hi + off]
                                a = g[lo:hi]
                                for t in range(hi - lo):
                                    seg[t] += a[t]
                            else:
                                for t in range(lo, hi):
                                    row[t * SW + off] += g[t]


@_njit
def avg_pool_grad_nhwc(dy, dx, include_pad, p):
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = dx.shape[4]
    full = KD * KH * KW
    dx[...] = 0
    for n in range(dx.shape[0]):
        img = dx[n]
        for od in range(Do):
            sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
            for oh in range(Ho):
                sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
                for ow in range(Wo):
                    sw, w0, w1 = _bounds(ow, SW, PW, KW, DW, W)
                    count = full if include_pad else (d1 - d0) * (h1 - h0) * (w1 - w0)
                    g = dy[n, od, oh, ow]
                    for kd in range(d0, d1):
                        for kh in range(h0, h1):
                            for kw in range(w0, w1):
                                dst = img[sd + kd * DD, sh + kh * DH, sw + kw * DW]
                                for c in range(C):
                                    dst[c] += g[c] / count


@_njit
def index_grad_nchw(dy, mask, dx, p):
    """dx[plane q, mask[o]] += dy[q, o] (MaxPoolWithIndexGradient)."""
    Do, Ho, Wo = p[3], p[4], p[5]
    per = Do * Ho * Wo
    dx[...] = 0
    flat_dy = dy.reshape(-1)
    for q in range(dx.shape[0]):
        gplane = dx[q].reshape(-1)
        for o in range(per):
            gplane[mask[q * per + o]] += flat_dy[q * per + o]


@_njit
def index_grad_nhwc(dy, mask, dx, p):
    C = dx.shape[4]
    per = p[3] * p[4] * p[5]
    dx[...] = 0
    flat_dy = dy.reshape(-1)
    for n in range(dx.shape[0]):
        img = dx[n].reshape(-1)
        for o in range(per):
            base = (n * per + o) * C
            for c in range(C):
                img[mask[base + c] * C + c] += flat_dy[base + c]
