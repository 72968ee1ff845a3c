"""Numba direct convolution kernels (no GEMM, no im2col matrix), driven by nbcaffe/ops/_conv_cpu.py:
the padded-row kernels of shallow convolutions and the depthwise kernel.  Every kernel is
``nogil`` and ``cache=True``: all the code they call is in this file.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

_njit = functools.partial(numba.njit, cache=True, nogil=True)

# ---------------------------------------------------------------------------- direct kernels
# Small-depth convolutions (few input channels x taps, e.g. LeNet's first layer: 1 channel,
# 5x5) starve a GEMM (a 25-deep product) and pay for an im2col matrix KH*KW times the input.
# These kernels work on padded-row images instead: with the padded plane flattened by its row
# length Wp = Wo + (KW-1)*DW, output (oh, ow) sits at oh*Wp + ow and reads input oh*Wp + ow +
# kh*DH*Wp + kw*DW, so every tap is one contiguous, vectorisable pass over L = (Ho-1)*Wp + Wo
# positions (the Wp - Wo columns between rows are computed and dropped).  Up to five kernel
# columns share one pass.  NCHW, one or two spatial dims, unit strides only.

_fm = functools.partial(numba.njit, cache=True, nogil=True, fastmath={"contract"})
_fr = functools.partial(numba.njit, cache=True, nogil=True, fastmath={"reassoc", "contract"})


@_njit
def pad_plane(xf, off, H, W, xp, PH, PW, Hp, Wp):
    """xp[:Hp*Wp] = the (H, W) plane at xf[off:] zero-padded by PH rows and PW columns in front
    (cropped to Hp x Wp: negative tail pads)."""
    for t in range(Hp * Wp):
        xp[t] = 0
    c0 = min(W, Wp - PW)
    for ih in range(min(H, Hp - PH)):
        d = xp[(ih + PH) * Wp + PW:(ih + PH) * Wp + PW + c0]
        s = xf[off + ih * W:off + ih * W + c0]
        for t in range(c0):
            d[t] = s[t]


@_fm
def direct_taps(acc, src, base, w, wbase, KW, DW, L):
    """acc[j] += Σ_kw w[wbase + kw] · src[base + kw*DW + j] for j < L, five columns per pass.

    Each column is its own 0-based slice: indexing one slice at j + kw*DW with a run-time
    offset did not vectorise (LeNet conv1 4.7 ms against 1.1 ms on one thread)."""
    for k0 in range(0, KW, 5):
        kn = min(5, KW - k0)
        b0 = base + k0 * DW
        s0 = src[b0:b0 + L]
        w0 = w[wbase + k0]
        if kn == 1:
            for j in range(L):
                acc[j] += w0 * s0[j]
            continue
        s1 = src[b0 + DW:b0 + DW + L]
        w1 = w[wbase + k0 + 1]
        if kn == 2:
            for j in range(L):
                acc[j] += w0 * s0[j] + w1 * s1[j]
            continue
        s2 = src[b0 + 2 * DW:b0 + 2 * DW + L]
        w2 = w[wbase + k0 + 2]
        if kn == 3:
            for j in range(L):
                acc[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j]
            continue
        s3 = src[b0 + 3 * DW:b0 + 3 * DW + L]
        w3 = w[wbase + k0 + 3]
        if kn == 4:
            for j in range(L):
                acc[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]
            continue
        s4 = src[b0 + 4 * DW:b0 + 4 * DW + L]
        w4 = w[wbase + k0 + 4]
        for j in range(L):
            acc[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j] + w4 * s4[j]


@_fr
def direct_dots(dw, wbase, g, src, base, KW, DW, L, zero):
    """dw[wbase + kw] += Σ_j g[j] · src[base + kw*DW + j] for j < L, five columns per pass
    (the sums reassociate so they vectorise; one 0-based slice per column, as direct_taps)."""
    for k0 in range(0, KW, 5):
        kn = min(5, KW - k0)
        b0 = base + k0 * DW
        s0 = src[b0:b0 + L]
        if kn == 1:
            a0 = zero
            for j in range(L):
                a0 += g[j] * s0[j]
            dw[wbase + k0] += a0
            continue
        s1 = src[b0 + DW:b0 + DW + L]
        if kn == 2:
            a0 = a1 = zero
            for j in range(L):
                v = g[j]
                a0 += v * s0[j]
                a1 += v * s1[j]
            dw[wbase + k0] += a0
            dw[wbase + k0 + 1] += a1
            continue
        s2 = src[b0 + 2 * DW:b0 + 2 * DW + L]
        if kn == 3:
            a0 = a1 = a2 = zero
            for j in range(L):
                v = g[j]
                a0 += v * s0[j]
                a1 += v * s1[j]
                a2 += v * s2[j]
            dw[wbase + k0] += a0
            dw[wbase + k0 + 1] += a1
            dw[wbase + k0 + 2] += a2
            continue
        s3 = src[b0 + 3 * DW:b0 + 3 * DW + L]
        if kn == 4:
            a0 = a1 = a2 = a3 = zero
            for j in range(L):
                v = g[j]
                a0 += v * s0[j]
                a1 += v * s1[j]
                a2 += v * s2[j]
                a3 += v * s3[j]
            dw[wbase + k0] += a0
            dw[wbase + k0 + 1] += a1
            dw[wbase + k0 + 2] += a2
            dw[wbase + k0 + 3] += a3
            continue
        s4 = src[b0 + 4 * DW:b0 + 4 * DW + L]
        a0 = a1 = a2 = a3 = a4 = zero
        for j in range(L):
            v = g[j]
            a0 += v * s0[j]
            a1 += v * s1[j]
            a2 += v * s2[j]
            a3 += v * s3[j]
            a4 += v * s4[j]
        dw[wbase + k0] += a0
        dw[wbase + k0 + 1] += a1
        dw[wbase + k0 + 2] += a2
        dw[wbase + k0 + 3] += a3
        dw[wbase + k0 + 4] += a4


@_fm
def direct_conv_nchw(x, n0, n1, w, b, has_bias, y, acc, xp, p, group, zero, relu):
    """y[n] = conv(x[n], w) (+ b) for n in [n0, n1): one padded-row image per output channel,
    accumulated tap row by tap row, then copied without its Wp - Wo extra columns (through
    max(., 0) when relu: ConvRelu).

    x (N, C, 1, H, W), w (M, Cg, 1, KH, KW), y (N, M, 1, Ho, Wo), all C-contiguous; acc: L
    scratch; xp: Cg*Hp*Wp scratch for the padded planes of one group (unused when X's planes
    already have the padded row length and no head pads).
    """
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C, M = x.shape[1], y.shape[1]
    cg, mg = C // group, M // group
    Wp = Wo + (KW - 1) * DW
    Hp = Ho + (KH - 1) * DH
    L = (Ho - 1) * Wp + Wo
    padded = PH != 0 or PW != 0 or Wp != W or Hp > H
    xf = x.reshape(-1)
    wf = w.reshape(-1)
    yf = y.reshape(-1)
    a = acc[:L]
    for n in range(n0, n1):
        for g in range(group):
            if padded:
                for c in range(cg):
                    pad_plane(xf, (n * C + g * cg + c) * H * W, H, W, xp[c * Hp * Wp:(c + 1) * Hp * Wp], PH, PW, Hp, Wp)
                src = xp
            else:
                src = xf
            for mi in range(mg):
                m = g * mg + mi
                bv = b[m] if has_bias else zero
                for j in range(L):
                    a[j] = bv
                for c in range(cg):
                    base = c * Hp * Wp if padded else (n * C + g * cg + c) * H * W
                    for kh in range(KH):
                        direct_taps(a, src, base + kh * DH * Wp, wf, ((m * cg + c) * KH + kh) * KW, KW, DW, L)
                yo = (n * M + m) * Ho * Wo
                for oh in range(Ho):
                    d = yf[yo + oh * Wo:yo + (oh + 1) * Wo]
                    s = a[oh * Wp:oh * Wp + Wo]
                    if relu:
                        for t in range(Wo):
                            v = s[t]
                            d[t] = v if v > 0 else zero
                    else:
                        for t in range(Wo):
                            d[t] = s[t]


@_fr
def direct_filter_grad_nchw(x, dy, n0, n1, dw, db, want_db, grow, xp, p, group, zero):
    """dw (M, Cg*KH*KW) += Σ_{n in [n0, n1)} dY[n, m] · (the X rows each tap reads), and db (M,)
    += Σ dY[n, m] when want_db: dY's rows are copied into grow with the row length Wp (zeros
    between rows), then every tap is one dot product over L positions.  Shapes as
    direct_conv_nchw; grow: L scratch."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C, M = x.shape[1], dy.shape[1]
    cg, mg = C // group, M // group
    Wp = Wo + (KW - 1) * DW
    Hp = Ho + (KH - 1) * DH
    L = (Ho - 1) * Wp + Wo
    padded = PH != 0 or PW != 0 or Wp != W or Hp > H
    xf = x.reshape(-1)
    dyf = dy.reshape(-1)
    g = grow[:L]
    for t in range(L):
        g[t] = 0
    for n in range(n0, n1):
        for gr in range(group):
            if padded:
                for c in range(cg):
                    pad_plane(xf, (n * C + gr * cg + c) * H * W, H, W, xp[c * Hp * Wp:(c + 1) * Hp * Wp], PH, PW, Hp,
                              Wp)
                src = xp
            else:
                src = xf
            for mi in range(mg):
                m = gr * mg + mi
                total = 0.0
                yo = (n * M + m) * Ho * Wo
                for oh in range(Ho):
                    d = g[oh * Wp:oh * Wp + Wo]
                    s = dyf[yo + oh * Wo:yo + (oh + 1) * Wo]
                    for t in range(Wo):
                        v = s[t]
                        d[t] = v
                        total += v
                if want_db:
                    db[m] += total
                for c in range(cg):
                    base = c * Hp * Wp if padded else (n * C + gr * cg + c) * H * W
                    for kh in range(KH):
                        direct_dots(dw[m], (c * KH + kh) * KW, g, src, base + kh * DH * Wp, KW, DW, L, zero)


@_njit
def _phase_planes(xf, src, H, W, xq, SH, SW, PH, PW, Hq, Wq, rowbuf):
    """xq[(a*SW + c)*Hq*Wq + i*Wq + j] = Xpad[i*SH + a, j*SW + c] for the (H, W) plane at xf[src:]
    zero-padded by PH rows and PW columns in front (zero beyond the image): the SH*SW phase
    planes of a strided convolution, in which every tap reads a contiguous run.

    Each padded input row is first copied whole into ``rowbuf`` (Wq*SW), then split into its SW
    column phases with 0-based indices (strided reads at a run-time offset straight from the image
    took 0.45 ms for the 32 planes of UltraFace's 32x120x160 stride-2 layer, this 0.23 ms)."""
    Wb = Wq * SW
    c0 = max(0, min(W, Wb - PW))  # image columns inside the padded row
    for t in range(Wb):
        rowbuf[t] = 0
    body = rowbuf[PW:PW + c0]
    for a in range(SH):
        for i in range(Hq):
            ih = i * SH + a - PH
            if 0 <= ih < H:
                s = xf[src + ih * W:src + ih * W + c0]
                for t in range(c0):
                    body[t] = s[t]
                for c in range(SW):
                    dst = xq[((a * SW + c) * Hq + i) * Wq:((a * SW + c) * Hq + i + 1) * Wq]
                    if SW == 1:
                        for j in range(Wq):
                            dst[j] = rowbuf[j]
                    else:
                        for j in range(Wq):
                            dst[j] = rowbuf[j * SW + c]
            else:
                for c in range(SW):
                    dst = xq[((a * SW + c) * Hq + i) * Wq:((a * SW + c) * Hq + i + 1) * Wq]
                    for j in range(Wq):
                        dst[j] = 0


@_fm
def _depthwise_3x3_rows(xq, wf, wbase, bv, yf, yo, Ho, Wo, Hq, Wq, SH, SW, DH, DW, relu, zero):
    """A 3x3 depthwise output plane straight from its phase planes: per output row, one pass
    that sums the nine taps (no accumulator round trips; the ReLU in the same pass)."""
    w0, w1, w2 = wf[wbase], wf[wbase + 1], wf[wbase + 2]
    w3, w4, w5 = wf[wbase + 3], wf[wbase + 4], wf[wbase + 5]
    w6, w7, w8 = wf[wbase + 6], wf[wbase + 7], wf[wbase + 8]
    o = np.empty(9, np.int64)  # where each tap's run starts in xq (row 0)
    for kh in range(3):
        r = kh * DH
        for kw in range(3):
            c = kw * DW
            o[kh * 3 + kw] = ((r % SH) * SW + c % SW) * Hq * Wq + (r // SH) * Wq + c // SW
    for oh in range(Ho):
        base = oh * Wq
        s0 = xq[o[0] + base:o[0] + base + Wo]
        s1 = xq[o[1] + base:o[1] + base + Wo]
        s2 = xq[o[2] + base:o[2] + base + Wo]
        s3 = xq[o[3] + base:o[3] + base + Wo]
        s4 = xq[o[4] + base:o[4] + base + Wo]
        s5 = xq[o[5] + base:o[5] + base + Wo]
        s6 = xq[o[6] + base:o[6] + base + Wo]
        s7 = xq[o[7] + base:o[7] + base + Wo]
        s8 = xq[o[8] + base:o[8] + base + Wo]
        d = yf[yo + oh * Wo:yo + (oh + 1) * Wo]
        if relu:
            for t in range(Wo):
                v = (bv + w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t] + w4 * s4[t] + w5 * s5[t]
                     + w6 * s6[t] + w7 * s7[t] + w8 * s8[t])
                d[t] = v if v > 0 else zero
        else:
            for t in range(Wo):
                d[t] = (bv + w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t] + w4 * s4[t] + w5 * s5[t]
                        + w6 * s6[t] + w7 * s7[t] + w8 * s8[t])


@_fm
def depthwise_conv_nchw(x, q0, q1, w, b, has_bias, y, acc, xq, p, zero, relu):
    """Output planes q in [q0, q1) of the N*M planes of a convolution with one input channel
    per group (depthwise; M/C outputs per input channel): y[n, m] = b[m] + Σ_{kh, kw}
    w[m, 0, 0, kh, kw] · Xpad[n, m // (M/C)][oh*SH + kh*DH, ow*SW + kw*DW], then max(., 0) when
    relu (ConvRelu).

    The input plane is split into its SH*SW phase planes (_phase_planes; stride 1: the padded
    plane itself) with rows of Wq = Wo + (KW-1)*DW // SW, so every tap is one contiguous pass
    over L = (Ho-1)*Wq + Wo accumulator positions (direct_conv_nchw's padded rows), up to three
    kernel columns per pass.  x (N, C, 1, H, W), w (M, 1, 1, KH, KW), y (N, M, 1, Ho, Wo),
    C-contiguous; acc: L scratch; xq: SH*SW*Hq*Wq scratch.
    """
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C, M = x.shape[1], y.shape[1]
    mg = M // C
    Hq = Ho + (KH - 1) * DH // SH
    Wq = Wo + (KW - 1) * DW // SW
    L = (Ho - 1) * Wq + Wo
    xf = x.reshape(-1)
    wf = w.reshape(-1)
    yf = y.reshape(-1)
    a = acc[:L]
    rowbuf = np.empty(Wq * SW, x.dtype)
    last = -1
    for q in range(q0, q1):
        n, m = divmod(q, M)
        src = (n * C + m // mg) * H * W
        if src != last:  # the planes of one input channel share its phases
            last = src
            _phase_planes(xf, src, H, W, xq, SH, SW, PH, PW, Hq, Wq, rowbuf)
        bv = b[m] if has_bias else zero
        if KH == 3 and KW == 3:
            _depthwise_3x3_rows(xq, wf, m * 9, bv, yf, q * Ho * Wo, Ho, Wo, Hq, Wq, SH, SW, DH, DW, relu, zero)
            continue
        for j in range(L):
            a[j] = bv
        for kh in range(KH):
            r = kh * DH
            for k0 in range(0, KW, 3):
                kn = min(3, KW - k0)
                c = k0 * DW
                b0 = ((r % SH) * SW + c % SW) * Hq * Wq + (r // SH) * Wq + c // SW
                s0 = xq[b0:b0 + L]
                w0 = wf[(m * KH + kh) * KW + k0]
                if kn == 1:
                    for j in range(L):
                        a[j] += w0 * s0[j]
                    continue
                c = (k0 + 1) * DW
                b1 = ((r % SH) * SW + c % SW) * Hq * Wq + (r // SH) * Wq + c // SW
                s1 = xq[b1:b1 + L]
                w1 = wf[(m * KH + kh) * KW + k0 + 1]
                if kn == 2:
                    for j in range(L):
                        a[j] += w0 * s0[j] + w1 * s1[j]
                    continue
                c = (k0 + 2) * DW
                b2 = ((r % SH) * SW + c % SW) * Hq * Wq + (r // SH) * Wq + c // SW
                s2 = xq[b2:b2 + L]
                w2 = wf[(m * KH + kh) * KW + k0 + 2]
                for j in range(L):
                    a[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j]
        yo = q * Ho * Wo
        for oh in range(Ho):
            d = yf[yo + oh * Wo:yo + (oh + 1) * Wo]
            s = a[oh * Wq:oh * Wq + Wo]
            if relu:
                for t in range(Wo):
                    v = s[t]
                    d[t] = v if v > 0 else zero
            else:
                for t in range(Wo):
                    d[t] = s[t]
