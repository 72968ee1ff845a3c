"""CUDA kernels for nbcaffe/ops/roi_pool.py (same ops, same order, same launcher arguments).

RoIPool: one thread per output element (r, c, ph, pw) scanning its bin.  RoIPoolGradient:
zero dX, then one thread per dY element adding into dX[batch, c, argmax] with an atomic add
(bins of different RoIs may share a maximum, so the summation order varies between runs).
Bad batch indices are found first by a checking kernel (atomic min of the RoI index), and
nothing else runs when one is found.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.ops import roi_pool as cpu
from nbcaffe.registry import register_kernel

_F32 = np.float32
LOWEST = cpu.LOWEST


@cuda.jit(device=True)
def round_half_away(v):
    """C's round() of a float32 value, computed in float64 (exact)."""
    d = np.float64(v)
    if d >= 0.0:
        return int(math.floor(d + 0.5))
    return -int(math.floor(-d + 0.5))


@cuda.jit
def check_rois_kernel(rois, batch, bad):
    """bad[0] = min index of a RoI whose batch index is outside [0, batch)."""
    for r in range(cuda.grid(1), rois.shape[0], cuda.gridsize(1)):
        b = rois[r, 0]
        if not (b >= 0 and b < batch):
            cuda.atomic.min(bad, 0, r)


def _first_bad(rois, batch):
    n = rois.shape[0]
    if n == 0:
        return -1
    bad = cuda.to_device(np.array([n], np.int64))
    check_rois_kernel[blocks_for(n), THREADS](rois, batch, bad)
    first = int(bad.copy_to_host()[0])
    return first if first < n else -1


@cuda.jit
def roi_pool_kernel(x, rois, scale, want_argmax, y, argmax):
    """y[r, c, ph, pw] = max over the bin of x[batch(r), c]; argmax = h * W + w (or -1)."""
    channels = x.shape[1]
    height = x.shape[2]
    width = x.shape[3]
    pooled_h = y.shape[2]
    pooled_w = y.shape[3]
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        pw = i % pooled_w
        t = i // pooled_w
        ph = t % pooled_h
        t = t // pooled_h
        c = t % channels
        r = t // channels
        n = int(rois[r, 0])
        start_w = round_half_away(_F32(rois[r, 1]) * scale)
        start_h = round_half_away(_F32(rois[r, 2]) * scale)
        end_w = round_half_away(_F32(rois[r, 3]) * scale)
        end_h = round_half_away(_F32(rois[r, 4]) * scale)
        bin_h = _F32(max(end_h - start_h + 1, 1)) / _F32(pooled_h)
        bin_w = _F32(max(end_w - start_w + 1, 1)) / _F32(pooled_w)
        h0 = min(max(int(math.floor(_F32(ph) * bin_h)) + start_h, 0), height)
        h1 = min(max(int(math.ceil(_F32(ph + 1) * bin_h)) + start_h, 0), height)
        w0 = min(max(int(math.floor(_F32(pw) * bin_w)) + start_w, 0), width)
        w1 = min(max(int(math.ceil(_F32(pw + 1) * bin_w)) + start_w, 0), width)
        best = LOWEST
        if h1 <= h0 or w1 <= w0:
            best = 0.0
        where = -1
        for h in range(h0, h1):
            for w in range(w0, w1):
                v = x[n, c, h, w]
                if v > best:
                    best = v
                    where = h * width + w
        y[r, c, ph, pw] = best
        if want_argmax:
            argmax[r, c, ph, pw] = where


@register_kernel("RoIPool", CUDA)
def roi_pool_launch(x, rois, scale, want_argmax, y, argmax):
    """Launcher with roi_pool_cpu's signature: -1 or the first RoI with a bad batch index."""
    bad = _first_bad(rois, x.shape[0])
    if bad >= 0:
        return bad
    if y.size:
        roi_pool_kernel[blocks_for(y.size), THREADS](x, rois, _F32(scale), want_argmax, y, argmax)
    return -1


@cuda.jit
def zero_kernel(a):
    """a[i] = 0 over a flat device array."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = 0.0


@cuda.jit
def roi_pool_grad_kernel(rois, argmax, dy, dx_flat, channels, plane):
    """dx_flat[(batch(r) * C + c) * plane + argmax] += dy for every dY element with argmax >= 0."""
    pooled_h = dy.shape[2]
    pooled_w = dy.shape[3]
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        pw = i % pooled_w
        t = i // pooled_w
        ph = t % pooled_h
        t = t // pooled_h
        c = t % channels
        r = t // channels
        k = argmax[r, c, ph, pw]
        if k >= 0:
            n = int(rois[r, 0])
            cuda.atomic.add(dx_flat, (n * channels + c) * plane + k, dy[r, c, ph, pw])


@register_kernel("RoIPoolGradient", CUDA)
def roi_pool_grad_launch(rois, argmax, dy, dx):
    """Launcher with roi_pool_grad_cpu's signature: -1 or the first RoI with a bad batch index."""
    bad = _first_bad(rois, dx.shape[0])
    if bad >= 0:
        return bad
    flat = dx.reshape(dx.size)
    if dx.size:
        zero_kernel[blocks_for(dx.size), THREADS](flat)
    if dy.size:
        shape = tuple(dx.shape)
        roi_pool_grad_kernel[blocks_for(dy.size), THREADS](rois, argmax, dy, flat, shape[1], shape[2] * shape[3])
    return -1
