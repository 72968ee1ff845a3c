"""Convolution: Conv (Conv1D/2D/3D), ConvGradient, ConvTranspose, ConvTransposeGradient.

Layouts (Caffe2): NCHW X (N, C, *sp), filter (M, C/group, *kernel); NHWC X (N, *sp, C),
filter (M, *kernel, C/group); bias (M,).  ConvTranspose's filter is (C_in, C_out/group,
*kernel) in NCHW and (C_in, *kernel, C_out/group) in NHWC.  1, 2 or 3 spatial dims.

CPU kernels (the measurements behind each choice are in docs/design.md, "Convolution"):

* 1x1, stride 1, no padding: GEMMs on the tensors themselves, no im2col.
* NCHW, unit strides, at most 2 spatial dims, padded width <= 1.2x the output width and
  KH*C/G >= 32 (e.g. 3x3 on 56x56x64): "row-shift" GEMMs.  The zero-padded image is
  flattened with its padded row length Wp, so shifting the window by a kernel column is a
  shift by one in the flat index.  Only the KH kernel-row shifts are copied (col3: KH x the
  input instead of im2col's KH*KW x); one GEMM with the filter rearranged to (KW*M, KH*C)
  gives KW partial images Z, and Y is the sum of those partials shifted by kw (one pass that
  also adds the bias).  Extra work: the Wp - Wo garbage columns per row (3.6% at 56x56).
* Everything else: im2col per chunk of images, the chunk's images side by side in the col
  matrix so one GEMM serves them all (small images: LeNet's 8x8 outputs), then a scatter.
* Gradients: dX with unit strides is a row-shift convolution of dY with the flipped,
  transposed filter; otherwise the GEMM Wᵀ·dY followed by col2im.  dW accumulates
  col·dYᵀ per chunk into per-chunk partial sums that are added in a fixed order, so results
  do not depend on thread timing.
* Chunks / row blocks run on a small thread pool with OpenBLAS set to one thread
  (``_conv_pool.run_tasks``).

ConvTranspose is the adjoint of a convolution: its forward pass is a convolution's input
gradient, its input gradient a convolution, its filter gradient a convolution's filter
gradient with the roles of input and output swapped; the same kernels serve both ops.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GradientContext
from nbcaffe.devices import CPU
from nbcaffe.operator import Operator
from nbcaffe.ops import _conv_pool as cp
from nbcaffe.registry import register_op

_njit = functools.partial(numba.njit, cache=True, nogil=True)

# Scratch budget (bytes) of one task's col / col3+Z buffers: big enough that a 64-channel
# 56x56 image is one row-shift task, small enough to stay in a large L2/L3 slice.
TASK_BYTES = 8 << 20


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


@_njit
def im2col_nchw(x, n0, col, p, group):
    """col[g, (c, kd, kh, kw), i*P + (od, oh, ow)] = X[n0 + i, g*Cg + c, tap] (0 in padding).

    x (N, C, D, H, W); col (G, Cg*KD*KH*KW, k*P) for k images.  Each tap's valid output
    ranges are computed once; a tap that reaches into the padding zero-fills its row first,
    so the copy loops carry no tests (slices indexed from 0: those loops vectorise).
    """
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = x.shape[1]
    cg = C // group
    P = Do * Ho * Wo
    k = col.shape[2] // P
    for g in range(group):
        for c in range(cg):
            for kd in range(KD):
                d0, d1 = _valid_range(kd * DD - PD, SD, D, Do)
                for kh in range(KH):
                    h0, h1 = _valid_range(kh * DH - PH, SH, H, Ho)
                    for kw in range(KW):
                        row = col[g, ((c * KD + kd) * KH + kh) * KW + kw]
                        off = kw * DW - PW
                        lo, hi = _valid_range(off, SW, W, Wo)
                        n = hi - lo
                        if d0 > 0 or d1 < Do or h0 > 0 or h1 < Ho or lo > 0 or hi < Wo:
                            row[:] = 0
                        for i in range(k):
                            plane = x[n0 + i, g * cg + c]
                            for od in range(d0, d1):
                                idd = od * SD - PD + kd * DD
                                for oh in range(h0, h1):
                                    src = plane[idd, oh * SH - PH + kh * DH]
                                    o = i * P + (od * Ho + oh) * Wo + lo
                                    d2 = row[o:o + n]
                                    if SW == 1:
                                        s2 = src[off + lo:off + hi]
                                        for t in range(n):
                                            d2[t] = s2[t]
                                    else:
                                        for t in range(n):
                                            d2[t] = src[off + (lo + t) * SW]


@_njit
def col2im_nchw(col, n0, dx, p, group):
    """dx[n0 + i] = the adjoint of im2col_nchw (every col entry added back to its X cell)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    C = dx.shape[1]
    cg = C // group
    P = Do * Ho * Wo
    k = col.shape[2] // P
    dx[n0:n0 + k] = 0
    for g in range(group):
        for c in range(cg):
            for kd in range(KD):
                d0, d1 = _valid_range(kd * DD - PD, SD, D, Do)
                for kh in range(KH):
                    h0, h1 = _valid_range(kh * DH - PH, SH, H, Ho)
                    for kw in range(KW):
                        row = col[g, ((c * KD + kd) * KH + kh) * KW + kw]
                        off = kw * DW - PW
                        lo, hi = _valid_range(off, SW, W, Wo)
                        for i in range(k):
                            plane = dx[n0 + i, g * cg + c]
                            for od in range(d0, d1):
                                idd = od * SD - PD + kd * DD
                                base = i * P + od * Ho * Wo
                                for oh in range(h0, h1):
                                    dst = plane[idd, oh * SH - PH + kh * DH]
                                    o = base + oh * Wo
                                    if SW == 1:
                                        d2 = dst[off + lo:off + hi]
                                        s2 = row[o + lo:o + hi]
                                        for t in range(hi - lo):
                                            d2[t] += s2[t]
                                    else:
                                        for t in range(lo, hi):
                                            dst[off + t * SW] += row[o + t]


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
def scatter_images(z, n0, y, b, has_bias):
    """y[n0 + i, g*Mg + m, t] = z[g, m, i*P + t] (+ b): z (G, Mg, k*P), y (N, M, P)."""
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


@_njit
def add_bias_rows(y, n0, n1, b):
    """y (N, M, P): y[n, m, :] += b[m] for n in [n0, n1) (NCHW bias)."""
    for n in range(n0, n1):
        for m in range(y.shape[1]):
            row = y[n, m]
            v = b[m]
            for t in range(row.shape[0]):
                row[t] += v


@_njit
def add_bias_cols(y, r0, r1, b):
    """y (R, M): y[r, :] += b for r in [r0, r1) (NHWC bias)."""
    for r in range(r0, r1):
        row = y[r]
        for t in range(row.shape[0]):
            row[t] += b[t]


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
def rowshift_sum(z, y, h0, h1, b, has_bias, KW, DW, Wp):
    """y[g*Mg + m, h, w] = b + sum_kw z[g, kw*Mg + m, (h - h0)*Wp + w + kw*DW] for h in [h0, h1).

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


# ============================================================================ plans
# A plan is a tuple of ints that the kernels (CPU and CUDA) take next to the arrays:
# (nchw, group, has_bias, strategy, chunk or rows, workers) + the 18 canonical window ints.
# Scratch (CPU only; the CUDA kernels need none) is a 4-tuple of per-worker / per-task
# arrays: (col, aux, parts, extra) whose meaning depends on the pass (see each driver).

FWD_GEMM1X1, FWD_ROWSHIFT, FWD_IM2COL = 0, 1, 2
PLAN_HEAD = 6
# Row-shift computes padded-width columns; above this ratio of computed to needed columns
# (small images: LeNet's 12x12 -> 8x8 conv computes 1.5x) im2col is cheaper, and below this
# GEMM depth (KH x input channels per group; LeNet's conv1 has 5) the GEMMs are too thin.
ROWSHIFT_MAX_WASTE = 1.2
ROWSHIFT_MIN_DEPTH = 32


def _canon(plan):
    return plan[PLAN_HEAD:]


def _pointwise(geo):
    return all(k == 1 for k in geo.kernel) and all(s == 1 for s in geo.stride) and \
        not any(geo.pad_head) and not any(geo.pad_tail)


def _rowshift_ok(geo, canon):
    """Row-shift needs NCHW, unit strides, at most 2 spatial dims and non-negative head pads."""
    return geo.order == "NCHW" and all(s == 1 for s in geo.stride) and canon[0] == 1 and canon[3] == 1 \
        and canon[6] == 1 and min(canon[15:]) >= 0


def _chunk(n, per_image_bytes, threads):
    """Images per task: within TASK_BYTES, and at least `threads` tasks when there are images enough."""
    return max(1, min(TASK_BYTES // max(per_image_bytes, 1), -(-n // threads)))


def forward_plan(geo: cp.Geometry, group, has_bias, m_out, itemsize, cpu=True, rowshift=True):
    """(plan, scratch shapes) of y = conv(x) for ``geo`` (x: (N, C, in_sp) -> y: (N, m_out, out_sp))."""
    canon = geo.canonical()
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = canon
    nchw = int(geo.order == "NCHW")
    n, c = max(geo.batch, 1), geo.channels  # an empty batch plans like one image (and runs nothing)
    cg, mg = c // group, m_out // group
    P = Do * Ho * Wo
    threads = cp.num_threads() if cpu else 1
    head = (nchw, group, int(has_bias))
    if _pointwise(geo):
        # tasks: image chunks, or row blocks of the (positions, channels) matrix when few images
        if nchw:
            chunk = _chunk(n, (c + m_out) * P * itemsize, threads)
            return head + (FWD_GEMM1X1, chunk, min(threads, -(-n // chunk))) + canon, ()
        rows = -(-(n * P) // threads)
        return head + (FWD_GEMM1X1, rows, min(threads, -(-(n * P) // rows))) + canon, ()
    Wp = Wo + (KW - 1) * DW
    if rowshift and _rowshift_ok(geo, canon) and Wp <= ROWSHIFT_MAX_WASTE * Wo and KH * cg >= ROWSHIFT_MIN_DEPTH:
        row_bytes = (KH * c + KW * m_out) * Wp * itemsize
        rows = max(1, TASK_BYTES // max(row_bytes, 1))
        # row blocks only for the memory budget: splitting one image between threads cost
        # more (two 1-thread GEMMs) than one 2-thread GEMM (b1 3x3/64ch: 1.3 vs 2.1 ms)
        tiles = -(-Ho // rows)
        rows = -(-Ho // tiles)
        L = rows * Wp
        workers = min(threads, n * tiles)
        shapes = ((workers, group * KH * cg * L), (workers, group * KW * mg * L), (1,), (group * KW * mg * KH * cg,))
        return head + (FWD_ROWSHIFT, rows, workers) + canon, shapes
    kg = cg * KD * KH * KW
    chunk = _chunk(n, group * kg * P * itemsize, threads)
    workers = min(threads, -(-n // chunk))
    z = group * mg * chunk * P if (nchw and chunk > 1) else 1
    return head + (FWD_IM2COL, chunk, workers) + canon, ((workers, group * kg * chunk * P), (workers, z), (1,), (1,))


def filter_grad_plan(geo: cp.Geometry, group, m_out, itemsize, cpu=True):
    """(plan, scratch shapes) of dW: per-worker col and gathered dY, per-task partial sums."""
    canon = geo.canonical()
    nchw = int(geo.order == "NCHW")
    n = max(geo.batch, 1)
    cg, mg = geo.channels // group, m_out // group
    kg = cg * math.prod(canon[6:9])
    P = math.prod(canon[3:6])
    threads = cp.num_threads() if cpu else 1
    # the partials (one per chunk) are summed in chunk order, so a result never depends on
    # which thread ran which chunk
    chunk = _chunk(n, group * kg * P * itemsize, threads)
    n_tasks = -(-n // chunk)
    workers = min(threads, n_tasks)
    strategy = FWD_GEMM1X1 if _pointwise(geo) else FWD_IM2COL
    col = group * kg * chunk * P if (strategy == FWD_IM2COL or (nchw and chunk > 1)) else 1
    aux = group * mg * chunk * P if (nchw and chunk > 1) else 1
    shapes = ((workers, col), (workers, aux), (n_tasks, group * mg * kg), (group * mg * kg,))
    return (nchw, group, 0, strategy, chunk, workers) + canon, shapes


def data_grad_plan(geo: cp.Geometry, group, m_out, itemsize, cpu=True):
    """(plan, flipped plan or None, scratch shapes) of dX for ``geo``.

    With unit strides, NCHW, pads within the dilated kernel and a large enough image, dX is
    a row-shift convolution of dY with the flipped filter (``flipped``); otherwise col2im(Wᵀ·dY).
    """
    canon = geo.canonical()
    plan, shapes = forward_plan(geo, group, 0, m_out, itemsize, cpu, rowshift=False)
    if not _pointwise(geo) and geo.order == "NCHW" and all(s == 1 for s in geo.stride):
        ext = [d * (k - 1) for d, k in zip(geo.dilation, geo.kernel)]
        heads = [e - h for e, h in zip(ext, geo.pad_head)]
        if min(heads) >= 0:
            # tails from the sizes: what the flipped convolution needs to produce in_sp
            tails = [i + e - o - h for i, e, o, h in zip(geo.in_sp, ext, geo.out_sp, heads)]
            flip = cp.Geometry(geo.rank, geo.order, geo.batch, m_out, geo.out_sp, geo.in_sp, geo.kernel, geo.stride,
                               geo.dilation, heads, tails)
            flipped, fshapes = forward_plan(flip, group, 0, geo.channels, itemsize, cpu)
            if flipped[3] == FWD_ROWSHIFT:
                wf = (geo.channels * (m_out // group) * math.prod(canon[6:9]),)
                return plan, flipped, (fshapes[0], fshapes[1], wf, fshapes[3])
    nchw, chunk, workers = plan[0], plan[4], plan[5]
    P = math.prod(canon[3:6])
    aux = group * (m_out // group) * chunk * P if (nchw and chunk > 1) else 1
    if plan[3] == FWD_IM2COL:
        shapes = (shapes[0], (workers, aux), (1,), (1,))
    return plan, None, shapes


def allocate(ctx, shapes, dtype):
    """Scratch arrays for a CPU plan; () on other devices (their kernels need none)."""
    if ctx.device_type != CPU:
        return ()
    return tuple(ctx.empty(tuple(max(1, d) for d in shape), dtype) for shape in shapes)


# ============================================================================ CPU drivers


def conv_forward(x, w, b, y, plan, scratch):
    """y = conv(x, w) (+ b when plan says so).  x, y: 5-D views (N, C, D, H, W) for NCHW or
    (N, D, H, W, C) for NHWC; w (M, Cg, KD, KH, KW) / (M, KD, KH, KW, Cg).

    scratch: im2col (col, z, -, -); row-shift (col3, z, -, rearranged filter).
    """
    nchw, group, has_bias, strategy, chunk, workers = plan[:PLAN_HEAD]
    p = _canon(plan)
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    n = x.shape[0]
    m = w.shape[0]
    if n == 0 or y.size == 0:
        return
    if strategy == FWD_GEMM1X1:
        _forward_1x1(x, w, b, y, nchw, group, has_bias, chunk, workers)
        return
    if strategy == FWD_ROWSHIFT:
        _forward_rowshift(x, w, b, y, group, has_bias, chunk, workers, p, scratch)
        return
    mg = m // group
    kg = w[0].size
    P = Do * Ho * Wo
    if nchw:
        wg = w.reshape(group, mg, kg)
        y3 = y.reshape(n, m, P)
    else:
        wg = w.reshape(group, mg, kg).transpose(0, 2, 1)  # (G, Kg, Mg) view
        y2 = y.reshape(n * P, m)

    def task(t, worker):
        n0 = t * chunk
        n1 = min(n, n0 + chunk)
        k = n1 - n0
        if nchw:
            col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
            im2col_nchw(x, n0, col, p, group)
            if k == 1:
                out = y3[n0].reshape(group, mg, P)
                np.matmul(wg, col, out=out)
                if has_bias:
                    add_bias_rows(y3, n0, n1, b)
            else:
                z = scratch[1][worker, :group * mg * k * P].reshape(group, mg, k * P)
                np.matmul(wg, col, out=z)
                scatter_images(z, n0, y3, b, has_bias)
        else:
            col = scratch[0][worker, :k * P * group * kg].reshape(k * P, group, kg)
            im2col_nhwc(x, n0, col, p, group)
            np.matmul(col.transpose(1, 0, 2), wg, out=y2[n0 * P:n1 * P].reshape(k * P, group, mg).transpose(1, 0, 2))
            if has_bias:
                add_bias_cols(y2, n0 * P, n1 * P, b)

    cp.run_tasks(task, -(-n // chunk), workers)


def _forward_1x1(x, w, b, y, nchw, group, has_bias, chunk, workers):
    n = x.shape[0]
    m = w.shape[0]
    cg = w.shape[1] if nchw else w.shape[-1]
    mg = m // group
    if nchw:
        P = x[0, 0].size
        x4 = x.reshape(n, group, cg, P)
        y4 = y.reshape(n, group, mg, P)
        wg = w.reshape(group, mg, cg)

        def task(t, worker):
            n0 = t * chunk
            n1 = min(n, n0 + chunk)
            np.matmul(wg, x4[n0:n1], out=y4[n0:n1])
            if has_bias:
                add_bias_rows(y.reshape(n, m, P), n0, n1, b)

        cp.run_tasks(task, -(-n // chunk), workers)
        return
    R = x.size // (cg * group)
    x2 = x.reshape(R, group, cg)
    y2 = y.reshape(R, group, mg)
    wt = w.reshape(group, mg, cg).transpose(0, 2, 1)

    def rows(t, worker):
        r0 = t * chunk
        r1 = min(R, r0 + chunk)
        np.matmul(x2[r0:r1].transpose(1, 0, 2), wt, out=y2[r0:r1].transpose(1, 0, 2))
        if has_bias:
            add_bias_cols(y.reshape(R, m), r0, r1, b)

    cp.run_tasks(rows, -(-R // chunk), workers)


def _forward_rowshift(x, w, b, y, group, has_bias, rows, workers, p, scratch):
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    n, c = x.shape[0], x.shape[1]
    m = w.shape[0]
    cg, mg = c // group, m // group
    Wp = Wo + (KW - 1) * DW
    # a[g, kw*Mg + m, kh*Cg + c] = w[g*Mg + m, c, 0, kh, kw]
    a = scratch[3].reshape(group, KW * mg, KH * cg)
    a.reshape(group, KW, mg, KH, cg)[...] = w.reshape(group, mg, cg, KH, KW).transpose(0, 4, 1, 3, 2)
    tiles = -(-Ho // rows)
    x3 = x.reshape(n, c, H, W)
    y3 = y.reshape(n, m, Ho, Wo)

    def task(t, worker):
        img, tile = divmod(t, tiles)
        h0 = tile * rows
        h1 = min(Ho, h0 + rows)
        L = (h1 - h0) * Wp
        col3 = scratch[0][worker, :group * KH * cg * L].reshape(group, KH * cg, L)
        z = scratch[1][worker, :group * KW * mg * L].reshape(group, KW * mg, L)
        rowshift_col3(x3[img], col3, h0, group, KH, DH, PH, PW, Wp)
        np.matmul(a, col3, out=z)
        rowshift_sum(z, y3[img], h0, h1, b, has_bias, KW, DW, Wp)

    cp.run_tasks(task, n * tiles, workers)


def conv_backward_filter(x, dy, dw, plan, scratch):
    """dw = Σ over images and output positions of dy ⊗ the input patch (shapes as conv_forward).

    scratch: (per-worker col, per-worker gathered dY, per-chunk partial sums, NHWC total).
    """
    nchw, group, _, strategy, chunk, workers = plan[:PLAN_HEAD]
    p = _canon(plan)
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    n = x.shape[0]
    m = dw.shape[0]
    mg = m // group
    kg = dw[0].size
    P = Do * Ho * Wo
    if n == 0 or dw.size == 0:
        dw[...] = 0
        return
    n_tasks = -(-n // chunk)
    pointwise = strategy == FWD_GEMM1X1
    # partial sums are dWᵀ (Kg, Mg) per group: the (Kg x positions) @ (positions x Mg) GEMM ran
    # 20% faster than dY @ colᵀ on the 3x3/64-channel layer (1.95 vs 2.42 ms per image)
    parts = scratch[2][:n_tasks].reshape(n_tasks, group, kg, mg)
    if nchw:
        dy3 = dy.reshape(n, m, P)

    def task(t, worker):
        n0 = t * chunk
        n1 = min(n, n0 + chunk)
        k = n1 - n0
        if nchw:
            if pointwise and k == 1:
                col = x[n0].reshape(group, kg, P)
            elif pointwise:
                col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
                gather_images(x.reshape(n, group * kg, P), n0, col)
            else:
                col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
                im2col_nchw(x, n0, col, p, group)
            if k == 1:
                dyg = dy3[n0].reshape(group, mg, P)
            else:
                dyg = scratch[1][worker, :group * mg * k * P].reshape(group, mg, k * P)
                gather_images(dy3, n0, dyg)
            np.matmul(col, dyg.transpose(0, 2, 1), out=parts[t])
        else:
            if pointwise:
                col = x[n0:n1].reshape(k * P, group, kg)
            else:
                col = scratch[0][worker, :k * P * group * kg].reshape(k * P, group, kg)
                im2col_nhwc(x, n0, col, p, group)
            # the chunk's output positions are consecutive rows in NHWC: one GEMM per group
            np.matmul(col.transpose(1, 2, 0), dy[n0:n1].reshape(k * P, group, mg).transpose(1, 0, 2), out=parts[t])

    cp.run_tasks(task, n_tasks, workers)
    total = scratch[3][:group * kg * mg].reshape(group, kg, mg)
    sum_partials(parts, total)
    dw.reshape(group, mg, kg)[...] = total.transpose(0, 2, 1)


def conv_backward_data(dy, w, dx, plan, flipped, scratch):
    """dx = the input gradient of y = conv(x, w) for the output gradient dy (shapes as
    conv_forward): a row-shift convolution of dy with the flipped filter when ``flipped`` is a
    plan, else col2im(wᵀ·dy).  scratch: (col, gathered dY, -, -) or (col3, z, flipped filter,
    rearranged filter)."""
    nchw, group, _, strategy, chunk, workers = plan[:PLAN_HEAD]
    p = _canon(plan)
    n = dx.shape[0]
    m = w.shape[0]
    if n == 0 or dx.size == 0:
        return
    if m == 0:
        dx[...] = 0
        return
    mg = m // group
    kg = w[0].size
    if flipped is not None:
        c = dx.shape[1]
        cg = c // group
        KD, KH, KW = w.shape[2:5]
        # wf[g*Cg + c, m, kd, kh, kw] = w[g*Mg + m, c, KD-1-kd, KH-1-kh, KW-1-kw]
        wf = scratch[2].reshape(c, mg, KD, KH, KW)
        wf.reshape(group, cg, mg, KD, KH, KW)[...] = \
            w.reshape(group, mg, cg, KD, KH, KW)[:, :, :, ::-1, ::-1, ::-1].transpose(0, 2, 1, 3, 4, 5)
        conv_forward(dy, wf, wf.reshape(-1), dx, flipped, scratch)
        return
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    P = Do * Ho * Wo
    if strategy == FWD_GEMM1X1:
        cg = kg
        if nchw:
            np.matmul(w.reshape(group, mg, cg).transpose(0, 2, 1), dy.reshape(n, group, mg, P),
                      out=dx.reshape(n, group, cg, P))
        else:
            R = dy.size // m
            np.matmul(dy.reshape(R, group, mg).transpose(1, 0, 2), w.reshape(group, mg, cg),
                      out=dx.reshape(R, group, cg).transpose(1, 0, 2))
        return
    if nchw:
        wt = w.reshape(group, mg, kg).transpose(0, 2, 1)  # (G, Kg, Mg) view
        dy3 = dy.reshape(n, m, P)
    else:
        wg = w.reshape(group, mg, kg)

    def task(t, worker):
        n0 = t * chunk
        n1 = min(n, n0 + chunk)
        k = n1 - n0
        if nchw:
            col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
            if k == 1:
                dyg = dy3[n0].reshape(group, mg, P)
            else:
                dyg = scratch[1][worker, :group * mg * k * P].reshape(group, mg, k * P)
                gather_images(dy3, n0, dyg)
            np.matmul(wt, dyg, out=col)
            col2im_nchw(col, n0, dx, p, group)
        else:
            col = scratch[0][worker, :k * P * group * kg].reshape(k * P, group, kg)
            np.matmul(dy[n0:n1].reshape(k * P, group, mg).transpose(1, 0, 2), wg, out=col.transpose(1, 0, 2))
            col2im_nhwc(col, n0, dx, p, group)

    cp.run_tasks(task, -(-n // chunk), workers)


def add_bias(y, b, nchw):
    """y += b along the channel axis of a 5-D NCHW / NHWC view."""
    if nchw:
        add_bias_rows(y.reshape(y.shape[0], y.shape[1], -1), 0, y.shape[0], b)
    else:
        r = y.size // y.shape[-1]
        add_bias_cols(y.reshape(r, y.shape[-1]), 0, r, b)


def bias_grad(dy, db, nchw):
    """db = Σ of dy over every axis but the channel axis (5-D view)."""
    if nchw:
        bias_grad_rows(dy.reshape(dy.shape[0], dy.shape[1], -1), db)
    else:
        bias_grad_cols(dy.reshape(-1, dy.shape[-1]), db)


# ============================================================================ NumPy references
# Written per kernel tap with padded copies and strided slices (no im2col), in float64.


def _pad_canonical(x5, heads, tails):
    """Zero-pad (or crop, for negative pads) the 3 trailing dims of x5 (N, C, D, H, W)."""
    shape = list(x5.shape)
    out_shape = shape[:2] + [s + h + t for s, h, t in zip(shape[2:], heads, tails)]
    out = np.zeros(out_shape, np.float64)
    src = [slice(None), slice(None)]
    dst = [slice(None), slice(None)]
    for s, h, t in zip(shape[2:], heads, tails):
        src.append(slice(max(0, -h), s - max(0, -t)))
        dst.append(slice(max(0, h), max(0, h) + s - max(0, -h) - max(0, -t)))
    out[tuple(dst)] = x5[tuple(src)]
    return out


def _to_ncdhw(a, order, rank):
    """(N, C, D, H, W) float64 view/copy of an NCHW or NHWC tensor with `rank` spatial dims."""
    a = np.asarray(a, np.float64)
    if order == "NHWC":
        a = np.moveaxis(a, -1, 1)
    return a.reshape(a.shape[:2] + (1,) * (3 - rank) + a.shape[2:])


def _from_ncdhw(a5, order, rank):
    a = a5.reshape(a5.shape[:2] + a5.shape[5 - rank:])
    if order == "NHWC":
        a = np.moveaxis(a, 1, -1)
    return np.ascontiguousarray(a)


def _filter_oikkk(w, order, rank):
    """(O, I, KD, KH, KW) float64 of a filter stored (O, I, *k) (NCHW) or (O, *k, I) (NHWC)."""
    w = np.asarray(w, np.float64)
    if order == "NHWC":
        w = np.moveaxis(w, -1, 1)
    return w.reshape(w.shape[:2] + (1,) * (3 - rank) + w.shape[2:])


def _taps(geo):
    canon = geo.canonical()
    k, s, d = canon[6:9], canon[9:12], canon[12:15]
    out = canon[3:6]
    for kd in range(k[0]):
        for kh in range(k[1]):
            for kw in range(k[2]):
                yield (kd, kh, kw), tuple(slice(t * dd, t * dd + ss * (o - 1) + 1, ss)
                                           for t, dd, ss, o in zip((kd, kh, kw), d, s, out))


def reference_conv(x, w, b, geo, group):
    """Y of a convolution (float64, canonical (N, M, Do, Ho, Wo))."""
    heads = (0,) * (3 - geo.rank) + geo.pad_head
    tails = (0,) * (3 - geo.rank) + geo.pad_tail
    xp = _pad_canonical(_to_ncdhw(x, geo.order, geo.rank), heads, tails)
    wf = _filter_oikkk(w, geo.order, geo.rank)
    n, c = xp.shape[:2]
    m, cg = wf.shape[:2]
    mg = m // group
    y = np.zeros((n, m) + tuple(geo.canonical()[3:6]))
    for (kd, kh, kw), sl in _taps(geo):
        patch = xp[(slice(None), slice(None)) + sl]  # (N, C, Do, Ho, Wo)
        for g in range(group):
            y[:, g * mg:(g + 1) * mg] += np.einsum("mc,ncdhw->nmdhw", wf[g * mg:(g + 1) * mg, :, kd, kh, kw],
                                                   patch[:, g * cg:(g + 1) * cg])
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, m, 1, 1, 1)
    return y


def reference_conv_grads(x, w, dy, geo, group):
    """(dW (M, Cg, KD, KH, KW), db (M,), dX (N, C, D, H, W)) of a convolution, float64."""
    heads = (0,) * (3 - geo.rank) + geo.pad_head
    tails = (0,) * (3 - geo.rank) + geo.pad_tail
    x5 = _to_ncdhw(x, geo.order, geo.rank)
    xp = _pad_canonical(x5, heads, tails)
    wf = _filter_oikkk(w, geo.order, geo.rank)
    dy5 = _to_ncdhw(dy, geo.order, geo.rank)
    m, cg = wf.shape[:2]
    mg = m // group
    dw = np.zeros_like(wf)
    dxp = np.zeros_like(xp)
    for (kd, kh, kw), sl in _taps(geo):
        index = (slice(None), slice(None)) + sl
        patch = xp[index]
        for g in range(group):
            gy = dy5[:, g * mg:(g + 1) * mg]
            dw[g * mg:(g + 1) * mg, :, kd, kh, kw] += np.einsum("nmdhw,ncdhw->mc", gy, patch[:, g * cg:(g + 1) * cg])
            view = dxp[index]
            view[:, g * cg:(g + 1) * cg] += np.einsum("mc,nmdhw->ncdhw", wf[g * mg:(g + 1) * mg, :, kd, kh, kw], gy)
    # crop the padding back off (negative pads were crops: their cells get no gradient)
    d = [slice(None), slice(None)]
    for s, h, t in zip(x5.shape[2:], heads, tails):
        d.append(slice(max(0, h), max(0, h) + s - max(0, -h) - max(0, -t)))
    dx = np.zeros_like(x5)
    src = [slice(None), slice(None)] + [slice(max(0, -h), s - max(0, -t)) for s, h, t in zip(x5.shape[2:], heads,
                                                                                           tails)]
    dx[tuple(src)] = dxp[tuple(d)]
    db = dy5.sum(axis=(0, 2, 3, 4))
    return dw, db, dx


def _filter_back(wf5, order, rank):
    """Inverse of _filter_oikkk: (O, I, KD, KH, KW) -> stored layout."""
    w = wf5.reshape(wf5.shape[:2] + wf5.shape[5 - rank:])
    if order == "NHWC":
        w = np.moveaxis(w, 1, -1)
    return np.ascontiguousarray(w)


# ============================================================================ ops


def _float_dtypes(names, dtypes):
    for name, dtype in zip(names, dtypes):
        if dtype is not None and np.dtype(dtype).kind != "f":
            raise errors.ShapeError(f"{name} must be a floating tensor, got {np.dtype(dtype).name}")
    first = np.dtype(dtypes[0])
    for name, dtype in zip(names[1:], dtypes[1:]):
        if dtype is not None and np.dtype(dtype) != first:
            raise errors.ShapeError(f"{names[0]} and {name} must share a dtype; got {first.name} and"
                                    f" {np.dtype(dtype).name}")


def filter_geometry(window, x_shape, w_shape, group, transpose=False):
    """(geometry, output channels) of Conv / ConvTranspose for these shapes, filter checked.

    Conv filter: (M, C/G, *k) NCHW, (M, *k, C/G) NHWC.  ConvTranspose filter: (C_in, C_out/G,
    *k) NCHW, (C_in, *k, C_out/G) NHWC; the geometry returned for it is the equivalent
    convolution's (from the transpose's output to its input).
    """
    x_shape, w_shape = tuple(int(d) for d in x_shape), tuple(int(d) for d in w_shape)
    n, c, in_sp = cp.split_shape(x_shape, window.order, "X")
    rank = len(in_sp)
    what = "ConvTranspose filter" if transpose else "filter"
    if len(w_shape) != len(x_shape):
        raise errors.ShapeError(f"{what} {w_shape} must have as many dims as X {x_shape} (two channel dims and"
                                f" {rank} kernel dims)")
    if group < 1:
        raise errors.ShapeError(f"group must be >= 1, got {group}")
    if window.order == "NCHW":
        w_first, w_chan, w_k = w_shape[0], w_shape[1], w_shape[2:]
    else:
        w_first, w_chan, w_k = w_shape[0], w_shape[-1], w_shape[1:-1]
    kernel = window.kernel if isinstance(window.kernel, tuple) else (window.kernel,) * rank
    if len(kernel) == rank and tuple(kernel) != tuple(w_k):
        raise errors.ShapeError(f"{what} {w_shape} ({window.order}) has kernel {list(w_k)} but the kernel"
                                f" arguments say {list(kernel)}")
    if not transpose:
        if c % group or c != w_chan * group:
            raise errors.ShapeError(f"X {x_shape} ({window.order}) has {c} channels but filter {w_shape} expects"
                                    f" {w_chan} per group x group={group} = {w_chan * group}")
        if w_first % group:
            raise errors.ShapeError(f"filter {w_shape}: {w_first} output channels are not divisible by"
                                    f" group={group}")
        return cp.resolve(window, x_shape, "X"), w_first
    if w_first != c:
        raise errors.ShapeError(f"{what} {w_shape} ({window.order}) must start with X's {c} input channels: it is"
                                f" (C_in, C_out/group, *kernel) in NCHW, (C_in, *kernel, C_out/group) in NHWC")
    if c % group:
        raise errors.ShapeError(f"X {x_shape}: {c} input channels are not divisible by group={group}")
    m = w_chan * group
    return cp.transpose_geometry(window, x_shape, m, "X"), m


def _check_bias(shape, m):
    if tuple(shape) != (m,):
        raise errors.ShapeError(f"bias {tuple(shape)} must be 1-D with one value per output channel ({m},)")


def _five(a, order, rank):
    """A 5-D view (N, C, D, H, W) / (N, D, H, W, C) of an NCHW / NHWC array with `rank` spatial dims."""
    shape = tuple(a.shape)
    if order == "NCHW":
        return a.reshape(shape[:2] + (1,) * (3 - rank) + shape[2:])
    return a.reshape(shape[:1] + (1,) * (3 - rank) + shape[1:])


_w5 = _five  # a filter has the same dim pattern: (M, Cg, *k) / (M, *k, Cg)


class _WindowOp(Operator):
    """Window ops parse their window arguments once, at creation."""

    window_kind = "conv"

    def setup(self):
        self.window = cp.parse_window(self.args, self.where(), self.window_kind)

    def reference_kwargs(self):
        return {"group": self.args.get("group", 1), "no_bias": self.args.get("no_bias", False),
                "window": self.window}


def conv_gradient_maker(op, g_output):
    """Caffe2's GetConvGradient / GetConvTransposeGradient: <Type>Gradient(X, filter, dY) ->
    (dfilter, [dbias], [dX]); without a bias input it adds no_bias=1; no_gradient_to_input=1
    drops dX."""
    ctx = GradientContext(op, g_output)
    compute_dx = not any(a.name == "no_gradient_to_input" and a.i for a in op.arg)
    outputs = [ctx.GI(1)]
    extra = {}
    if len(op.input) == 3:
        outputs.append(ctx.GI(2))
    else:
        extra["no_bias"] = 1
    if compute_dx:
        outputs.append(ctx.GI(0))
    ctx.add(op.type + "Gradient", [op.input[0], op.input[1], ctx.GO(0)], outputs, **extra)
    return ctx.result()


def _grad_outputs(ctx, outputs, no_bias, dtype):
    """(dfilter, dbias, dX) from a gradient op's outputs; absent ones are empty arrays."""
    rest = list(outputs[1:])
    db = rest.pop(0) if not no_bias and rest else ctx.empty((0,), dtype)
    dx = rest.pop(0) if rest else ctx.empty((0,), dtype)
    return outputs[0], db, dx


def conv_cpu(x, w, b, y, plan, scratch):
    """Conv: y = conv(x, w) + b (5-D views; see conv_forward)."""
    conv_forward(x, w, b, y, plan, scratch)


@register_op(aliases=("Conv1D", "Conv2D", "Conv3D"))
class Conv(_WindowOp):
    """Y[n, m, o] = bias[m] + Σ_{c, k} filter[m, c, k] · X[n, g·C/G + c, o·stride − pad_head + k·dilation]
    (g = the group of m; X is 0 outside the image; NCHW shown, NHWC keeps channels last).

    Inputs X (N, C, *sp) | (N, *sp, C), filter (M, C/G, *kernel) | (M, *kernel, C/G), optional
    bias (M,); 1-3 spatial dims (aliases Conv1D, Conv2D, Conv3D).  Arguments: kernel | kernel_h
    + kernel_w | kernels; stride | stride_h + stride_w | strides (1); pad | pad_t, pad_l, pad_b,
    pad_r | pads (0); dilation | dilation_h + dilation_w | dilations (1); group G (1); order
    ('NCHW'); legacy_pad (0 NOTSET, 1 VALID, 2 SAME, 3 CAFFE_LEGACY_POOLING);
    no_gradient_to_input (0).  Output size per dim: floor((in + pad_head + pad_tail −
    dilation·(k − 1) − 1) / stride) + 1.
    """

    inputs, outputs = ("X", "filter", "bias"), ("Y",)
    num_inputs = (2, 3)
    args = {**cp.window_args("conv"), "group": 1, "no_gradient_to_input": False}
    ignored_args = ("deterministic", "exhaustive_search")
    cpu = staticmethod(conv_cpu)
    gradient = staticmethod(conv_gradient_maker)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "Conv", "conv")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"])
        _float_dtypes(["X", "filter", "bias"][:len(shapes)], dtypes)
        if len(shapes) > 2:
            _check_bias(shapes[2], m)
        return [geo.shape(m, geo.out_sp)], [dtypes[0]]

    @staticmethod
    def reference(X, filter, bias=None, *, window, group=1, no_bias=False):  # noqa: A002 (Caffe2's name)
        geo, m = filter_geometry(window, X.shape, filter.shape, group)
        y = reference_conv(X, filter, bias, geo, group)
        return (_from_ncdhw(y, geo.order, geo.rank).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, w = inputs[0], inputs[1]
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group)
        has_bias = len(inputs) > 2
        plan, shapes = forward_plan(geo, group, has_bias, m, np.dtype(x.dtype).itemsize,
                                    cpu=self.ctx.device_type == CPU)
        b = inputs[2] if has_bias else w.reshape(-1)
        return functools.partial(self.kernel, _five(x, geo.order, geo.rank), _w5(w, geo.order, geo.rank), b,
                                 _five(outputs[0], geo.order, geo.rank), plan,
                                 allocate(self.ctx, shapes, x.dtype))


def _conv_grad_scratch(ctx, geo, group, m, dtype, need_dx):
    itemsize = np.dtype(dtype).itemsize
    cpu = ctx.device_type == CPU
    fplan, fshapes = filter_grad_plan(geo, group, m, itemsize, cpu)
    dplan, flipped, dshapes = data_grad_plan(geo, group, m, itemsize, cpu)
    scratch = (allocate(ctx, fshapes, dtype), allocate(ctx, dshapes, dtype) if need_dx else ())
    return (fplan, dplan, flipped), scratch


def conv_gradient_cpu(x, w, dy, dw, db, dx, plans, scratch):
    """ConvGradient: dw, db (when db.size) and dx (when dx.size) of y = conv(x, w) + b."""
    fplan, dplan, flipped = plans
    if db.size:
        bias_grad(dy, db, fplan[0])
    conv_backward_filter(x, dy, dw, fplan, scratch[0])
    if dx.size:
        conv_backward_data(dy, w, dx, dplan, flipped, scratch[1])


@register_op(aliases=("Conv1DGradient", "Conv2DGradient", "Conv3DGradient"))
class ConvGradient(_WindowOp):
    """dfilter[m, c, k] = Σ_{n, o} dY[n, m, o] · X[n, g·C/G + c, o·stride − pad_head + k·dilation],
    dbias[m] = Σ_{n, o} dY[n, m, o], dX = Σ over the taps that read each X cell of filter · dY.

    Inputs (X, filter, dY); outputs in Caffe2's order (dfilter, dbias, dX): dbias is absent
    with no_bias=1, dX when the op lists fewer outputs.  Arguments as Conv, plus no_bias.
    """

    inputs, outputs = ("X", "filter", "dY"), ("dfilter", "dbias", "dX")
    num_outputs = (1, 3)
    args = {**cp.window_args("conv"), "group": 1, "no_gradient_to_input": False, "no_bias": False}
    ignored_args = Conv.ignored_args
    gradient = None
    cpu = staticmethod(conv_gradient_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "ConvGradient", "conv")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"])
        expected = geo.shape(m, geo.out_sp)
        if tuple(shapes[2]) != expected:
            raise errors.ShapeError(f"dY {tuple(shapes[2])} must have the convolution's output shape {expected}"
                                    f" (X {tuple(shapes[0])}, filter {tuple(shapes[1])}, {geo.describe()})")
        _float_dtypes(["X", "filter", "dY"], dtypes)
        out = [tuple(shapes[1])] + ([] if args["no_bias"] else [(m,)]) + [tuple(shapes[0])]
        return out, [dtypes[1]] * (len(out) - 1) + [dtypes[0]]

    @staticmethod
    def reference(X, filter, dY, *, window, group=1, no_bias=False):  # noqa: A002
        geo, m = filter_geometry(window, X.shape, filter.shape, group)
        dw, db, dx = reference_conv_grads(X, filter, dY, geo, group)
        out = [_filter_back(dw, geo.order, geo.rank).astype(filter.dtype)]
        if not no_bias:
            out.append(db.astype(filter.dtype))
        out.append(_from_ncdhw(dx, geo.order, geo.rank).astype(X.dtype))
        return tuple(out)

    def bind(self, inputs, outputs):
        x, w, dy = inputs
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group)
        dw, db, dx = _grad_outputs(self.ctx, outputs, self.args["no_bias"], x.dtype)
        plans, scratch = _conv_grad_scratch(self.ctx, geo, group, m, x.dtype, dx.size > 0)
        order, rank = geo.order, geo.rank
        return functools.partial(self.kernel, _five(x, order, rank), _w5(w, order, rank), _five(dy, order, rank),
                                 _w5(dw, order, rank), db, _five(dx, order, rank) if dx.size else dx, plans, scratch)


def conv_transpose_cpu(x, w, b, y, plans, scratch):
    """ConvTranspose: y = the input gradient of the convolution whose output gradient is x
    (col2im(wᵀ·x), or a row-shift convolution with the flipped filter), plus b."""
    dplan, flipped, has_bias = plans
    conv_backward_data(x, w, y, dplan, flipped, scratch)
    if has_bias:
        add_bias(y, b, dplan[0])


@register_op
class ConvTranspose(_WindowOp):
    """Y[n, co, i·stride − pad_head + k] += Σ_{ci} X[n, ci, i] · filter[ci, co − g·Co/G, k] + bias[co]
    (the transpose of Conv; g = the group of ci; cells beyond the output are dropped).

    Inputs X (N, C_in, *sp) | (N, *sp, C_in), filter (C_in, C_out/G, *kernel) | (C_in, *kernel,
    C_out/G), optional bias (C_out,).  Output size per dim: (in − 1)·stride + kernel + adj −
    pad_head − pad_tail.  Arguments: kernel | kernel_h + kernel_w | kernels; stride(s) (1);
    pad(s) | pad_t/l/b/r (0); adj | adj_h + adj_w | adjs (0, at most the stride); group (1);
    order ('NCHW'); legacy_pad (VALID and SAME mean no padding, as in Caffe2);
    no_gradient_to_input (0).  1-3 spatial dims (Caffe2 had 2-D only); no dilation (Caffe2).
    """

    inputs, outputs = ("X", "filter", "bias"), ("Y",)
    num_inputs = (2, 3)
    window_kind = "transpose"
    args = {**cp.window_args("transpose"), "group": 1, "no_gradient_to_input": False}
    ignored_args = ("deterministic", "exhaustive_search")
    cpu = staticmethod(conv_transpose_cpu)
    gradient = staticmethod(conv_gradient_maker)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "ConvTranspose", "transpose")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"], transpose=True)
        _float_dtypes(["X", "filter", "bias"][:len(shapes)], dtypes)
        if len(shapes) > 2:
            _check_bias(shapes[2], m)
        return [geo.shape(m, geo.in_sp)], [dtypes[0]]

    @staticmethod
    def reference(X, filter, bias=None, *, window, group=1, no_bias=False):  # noqa: A002
        geo, m = filter_geometry(window, X.shape, filter.shape, group, transpose=True)
        # the transpose is the convolution's input gradient with X as the output gradient
        shape = geo.shape(m, geo.in_sp)
        _, _, y = reference_conv_grads(np.zeros(shape), filter, X, geo, group)
        if bias is not None:
            y = y + np.asarray(bias, np.float64).reshape(1, -1, 1, 1, 1)
        return (_from_ncdhw(y, geo.order, geo.rank).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, w = inputs[0], inputs[1]
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group, transpose=True)
        c_in = cp.split_shape(tuple(x.shape), geo.order)[1]
        dplan, flipped, shapes = data_grad_plan(geo, group, c_in, np.dtype(x.dtype).itemsize,
                                                self.ctx.device_type == CPU)
        has_bias = len(inputs) > 2
        b = inputs[2] if has_bias else w.reshape(-1)
        order, rank = geo.order, geo.rank
        return functools.partial(self.kernel, _five(x, order, rank), _w5(w, order, rank), b,
                                 _five(outputs[0], order, rank), (dplan, flipped, int(has_bias)),
                                 allocate(self.ctx, shapes, x.dtype))


def conv_transpose_gradient_cpu(x, w, dy, dw, db, dx, plans, scratch):
    """ConvTransposeGradient: dw = the convolution filter gradient with input dy and output
    gradient x; db = Σ dy per channel; dx = conv(dy, w)."""
    fplan, xplan = plans
    if db.size:
        bias_grad(dy, db, fplan[0])
    conv_backward_filter(dy, x, dw, fplan, scratch[0])
    if dx.size:
        conv_forward(dy, w, w.reshape(-1), dx, xplan, scratch[1])


@register_op
class ConvTransposeGradient(_WindowOp):
    """dfilter[ci, co, k] = Σ_{n, i} X[n, ci, i] · dY[n, co, i·stride − pad_head + k], dbias[co] =
    Σ dY[n, co, ·], dX = Conv(dY, filter) (same window); outputs (dfilter, dbias, dX) in
    Caffe2's order, dbias absent with no_bias=1, dX when fewer outputs are listed."""

    inputs, outputs = ("X", "filter", "dY"), ("dfilter", "dbias", "dX")
    num_outputs = (1, 3)
    window_kind = "transpose"
    args = {**cp.window_args("transpose"), "group": 1, "no_gradient_to_input": False, "no_bias": False}
    ignored_args = ConvTranspose.ignored_args
    gradient = None
    cpu = staticmethod(conv_transpose_gradient_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "ConvTransposeGradient", "transpose")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"], transpose=True)
        expected = geo.shape(m, geo.in_sp)
        if tuple(shapes[2]) != expected:
            raise errors.ShapeError(f"dY {tuple(shapes[2])} must have ConvTranspose's output shape {expected}"
                                    f" (X {tuple(shapes[0])}, filter {tuple(shapes[1])})")
        _float_dtypes(["X", "filter", "dY"], dtypes)
        out = [tuple(shapes[1])] + ([] if args["no_bias"] else [(m,)]) + [tuple(shapes[0])]
        return out, [dtypes[1]] * (len(out) - 1) + [dtypes[0]]

    @staticmethod
    def reference(X, filter, dY, *, window, group=1, no_bias=False):  # noqa: A002
        geo, m = filter_geometry(window, X.shape, filter.shape, group, transpose=True)
        # the convolution maps dY's shape to X's: its filter gradient has input dY, output grad X
        dw, db, _ = reference_conv_grads(dY, filter, X, geo, group)
        dx = reference_conv(dY, filter, None, geo, group)
        out = [_filter_back(dw, geo.order, geo.rank).astype(filter.dtype)]
        if not no_bias:
            out.append(_to_ncdhw(dY, geo.order, geo.rank).sum(axis=(0, 2, 3, 4)).astype(filter.dtype))
        out.append(_from_ncdhw(dx, geo.order, geo.rank).astype(X.dtype))
        return tuple(out)

    def bind(self, inputs, outputs):
        x, w, dy = inputs
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group, transpose=True)
        c_in = cp.split_shape(tuple(x.shape), geo.order)[1]
        dw, db, dx = _grad_outputs(self.ctx, outputs, self.args["no_bias"], x.dtype)
        itemsize = np.dtype(x.dtype).itemsize
        cpu = self.ctx.device_type == CPU
        fplan, fshapes = filter_grad_plan(geo, group, c_in, itemsize, cpu)
        xplan, xshapes = forward_plan(geo, group, 0, c_in, itemsize, cpu)
        scratch = (allocate(self.ctx, fshapes, x.dtype), allocate(self.ctx, xshapes, x.dtype) if dx.size else ())
        order, rank = geo.order, geo.rank
        return functools.partial(self.kernel, _five(x, order, rank), _w5(w, order, rank), _five(dy, order, rank),
                                 _w5(dw, order, rank), db, _five(dx, order, rank) if dx.size else dx,
                                 (fplan, xplan), scratch)
