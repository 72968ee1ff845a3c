"""CUDA kernels for nbcaffe/ops/resize.py (same ops, same order).

A forward pass is one thread per output element summing its taps (float64 accumulator); the
transposed pass of ResizeGradient is one thread per dY element with atomic adds into dX (the
summation order of inputs shared by several outputs varies between runs; float64 atomics
need compute capability 6.0).
"""

from __future__ import annotations

import math

from numba import cuda

from nbcaffe.cuda._array_util import fill_launch
from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.ops.resize import ResizeKernels
from nbcaffe.registry import register_kernel


@cuda.jit
def resize_axis_kernel(x, y, idx, w, valid, extrapolation):
    """y[o, j, i] = Σ_t w[j, t] x[o, idx[j, t], i], or extrapolation where valid[j] == 0."""
    outer, n_out, inner = y.shape
    taps = idx.shape[1]
    for k in range(cuda.grid(1), outer * n_out * inner, cuda.gridsize(1)):
        i = k % inner
        j = (k // inner) % n_out
        o = k // (inner * n_out)
        if valid[j] == 0:
            y[o, j, i] = extrapolation
        else:
            s = 0.0
            for t in range(taps):
                s += w[j, t] * x[o, idx[j, t], i]
            y[o, j, i] = s


def resize_axis_launch(x, y, idx, w, valid, extrapolation):
    if y.size:
        resize_axis_kernel[blocks_for(y.size), THREADS](x, y, idx, w, valid, extrapolation)


@cuda.jit
def round_clip_kernel(x, y, lo, hi):
    """y[i] = clip(round-half-even(x[i]), lo, hi)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        r = math.floor(v + 0.5)
        if r - v == 0.5 and r % 2 != 0:  # a tie rounded up to an odd number: take the even one
            r -= 1
        y[i] = lo if r < lo else (hi if r > hi else r)


def round_clip_launch(x, y, lo, hi):
    if x.size:
        round_clip_kernel[blocks_for(x.size), THREADS](x, y, lo, hi)


@cuda.jit
def resize_axis_grad_kernel(dy, dx, idx, w, valid):
    """dx[o, idx[j, t], i] += w[j, t] dy[o, j, i] (atomic) for valid j."""
    outer, n_out, inner = dy.shape
    taps = idx.shape[1]
    for k in range(cuda.grid(1), outer * n_out * inner, cuda.gridsize(1)):
        i = k % inner
        j = (k // inner) % n_out
        o = k // (inner * n_out)
        if valid[j] != 0:
            for t in range(taps):
                cuda.atomic.add(dx, (o, idx[j, t], i), w[j, t] * dy[o, j, i])


def resize_axis_grad_launch(dy, dx, idx, w, valid):
    fill_launch(dx.reshape(dx.size), 0)
    if dy.size:
        resize_axis_grad_kernel[blocks_for(dy.size), THREADS](dy, dx, idx, w, valid)


KERNELS = ResizeKernels(resize_axis_launch, round_clip_launch, resize_axis_grad_launch)
register_kernel("Resize", CUDA)(KERNELS)
register_kernel("ResizeGradient", CUDA)(KERNELS)
