"""CUDA kernels for nbcaffe/ops/pad_resize.py (same ops, same order).

Separable index tables (PadImage, ResizeNearest): one thread per output element for the
gather; the gradients are gathers too (one thread per input pixel summing the output positions
listed in the inverse tables), so they need no atomics and give the same sum order on every run.
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

# ----------------------------------------------------------------------- separable index tables


@cuda.jit
def index_gather_2d_kernel(x, y, src_h, src_w, value):
    """y[b, i, j, k] = x[b, src_h[i], src_w[j], k] (value where an index is -1); 4-D arrays."""
    nb, oh, ow, nk = y.shape
    n = nb * oh * ow * nk
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        k = t % nk
        rest = t // nk
        j = rest % ow
        rest //= ow
        i = rest % oh
        b = rest // oh
        h = src_h[i]
        w = src_w[j]
        if h < 0 or w < 0:
            y[b, i, j, k] = value
        else:
            y[b, i, j, k] = x[b, h, w, k]


def index_gather_2d_launch(x, y, src_h, src_w, value):
    index_gather_2d_kernel[blocks_for(y.size), THREADS](x, y, src_h, src_w, value)


@cuda.jit
def index_sum_2d_kernel(dy, dx, h_start, h_pos, w_start, w_pos):
    """dx[b, h, w, k] = sum of dy[b, i, j, k] over the listed positions i of h and j of w."""
    nb, nh, nw, nk = dx.shape
    n = nb * nh * nw * nk
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        k = t % nk
        rest = t // nk
        w = rest % nw
        rest //= nw
        h = rest % nh
        b = rest // nh
        acc = 0.0
        for a in range(h_start[h], h_start[h + 1]):
            i = h_pos[a]
            for c in range(w_start[w], w_start[w + 1]):
                acc += dy[b, i, w_pos[c], k]
        dx[b, h, w, k] = acc


def index_sum_2d_launch(dy, dx, h_start, h_pos, w_start, w_pos):
    index_sum_2d_kernel[blocks_for(dx.size), THREADS](dy, dx, h_start, h_pos, w_start, w_pos)


register_kernel("PadImage", CUDA)(index_gather_2d_launch)
register_kernel("PadImageGradient", CUDA)(index_sum_2d_launch)
register_kernel("ResizeNearest", CUDA)(index_gather_2d_launch)
register_kernel("ResizeNearestGradient", CUDA)(index_sum_2d_launch)
