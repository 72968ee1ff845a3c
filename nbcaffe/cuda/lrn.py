"""CUDA kernels for nbcaffe/ops/lrn.py (same ops, same order, same launcher arguments).

One thread per element of the (A, C, B) view; each sums its own channel window.
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.ops import lrn as cpu
from nbcaffe.registry import register_kernel

neg_pow = cuda.jit(device=True)(cpu._neg_pow)


@cuda.jit(device=True)
def lrn_window_scale(x, a, c, b, size, pre, alpha_over_size, bias):
    """bias + alpha_over_size * sum of x[a, c', b]**2 over the clipped window of channel c."""
    lo = max(0, c - pre)
    hi = min(x.shape[1], c - pre + size)
    acc = 0.0
    for cc in range(lo, hi):
        v = x[a, cc, b]
        acc += v * v
    return bias + alpha_over_size * acc


@cuda.jit
def lrn_kernel(x, size, pre, alpha_over_size, beta, bias, scale, y):
    """scale and y = x * scale**-beta, one thread per element of the (A, C, B) views."""
    n_c = x.shape[1]
    n_b = x.shape[2]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        a = t // n_c
        s = lrn_window_scale(x, a, c, b, size, pre, alpha_over_size, bias)
        scale[a, c, b] = s
        y[a, c, b] = x[a, c, b] * neg_pow(s, beta)


@register_kernel("LRN", CUDA)
def lrn_launch(x, size, pre, alpha_over_size, beta, bias, scale, y):
    """Launcher with lrn_cpu's signature."""
    lrn_kernel[blocks_for(x.size), THREADS](x, size, pre, alpha_over_size, beta, bias, scale, y)


@cuda.jit
def lrn_ratio_kernel(x, y, scale, dy, recompute, size, pre, alpha_over_size, bias, ratio):
    """ratio = dy * y / scale per element; ``recompute`` first writes scale from x."""
    n_c = x.shape[1]
    n_b = x.shape[2]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        a = t // n_c
        if recompute:
            s = lrn_window_scale(x, a, c, b, size, pre, alpha_over_size, bias)
            scale[a, c, b] = s
        else:
            s = scale[a, c, b]
        ratio[a, c, b] = dy[a, c, b] * y[a, c, b] / s


@cuda.jit
def lrn_grad_kernel(x, scale, dy, size, pre, alpha_over_size, beta, ratio, dx):
    """dx = dy * scale**-beta - 2 * alpha_over_size * beta * x * (sum of ratio over the channels
    whose window contains this one)."""
    n_c = x.shape[1]
    n_b = x.shape[2]
    post = size - 1 - pre
    coef = 2.0 * alpha_over_size * beta
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        a = t // n_c
        lo = max(0, c - post)
        hi = min(n_c, c + pre + 1)
        acc = 0.0
        for cc in range(lo, hi):
            acc += ratio[a, cc, b]
        dx[a, c, b] = dy[a, c, b] * neg_pow(scale[a, c, b], beta) - coef * x[a, c, b] * acc


@register_kernel("LRNGradient", CUDA)
def lrn_grad_launch(x, y, scale, dy, recompute, size, pre, alpha_over_size, beta, bias, ratio, dx):
    """Launcher with lrn_grad_cpu's signature."""
    blocks = blocks_for(x.size)
    lrn_ratio_kernel[blocks, THREADS](x, y, scale, dy, recompute, size, pre, alpha_over_size, bias, ratio)
    lrn_grad_kernel[blocks, THREADS](x, scale, dy, size, pre, alpha_over_size, beta, ratio, dx)
