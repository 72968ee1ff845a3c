"""CUDA kernels for nbcaffe/ops/topk.py (same ops, same order).

TopK: one thread per (outer, inner) line selects the best remaining entry k times (a value
strictly better, or equal with a lower index, wins), marking taken positions in ``taken``
(uint8 scratch of X's shape).  TopKGradient: fill, then one thread per dValues entry writes
its position (TopK's indices are distinct, so no two threads write the same cell).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbcaffe.cuda._array_util import fill_launch
from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit
def topk_kernel(x, values, indices, largest, taken):
    outer, n, inner = x.shape
    k = values.shape[1]
    for line in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = line // inner
        i = line % inner
        for j in range(n):
            taken[o, j, i] = 0
        for t in range(k):
            best = -1
            for j in range(n):
                if taken[o, j, i]:
                    continue
                if best < 0:
                    best = j
                elif largest and x[o, j, i] > x[o, best, i]:
                    best = j
                elif not largest and x[o, j, i] < x[o, best, i]:
                    best = j
            taken[o, best, i] = 1
            values[o, t, i] = x[o, best, i]
            indices[o, t, i] = best


@register_kernel("TopK", CUDA)
def topk_launch(x, values, indices, largest):
    outer, _n, inner = x.shape
    taken = cuda.device_array(x.shape, np.uint8)
    topk_kernel[blocks_for(outer * inner), THREADS](x, values, indices, largest, taken)


@cuda.jit
def topk_grad_kernel(dvalues, indices, dx):
    outer, k, inner = dvalues.shape
    for t in range(cuda.grid(1), outer * k * inner, cuda.gridsize(1)):
        i = t % inner
        s = (t // inner) % k
        o = t // (inner * k)
        dx[o, indices[o, s, i], i] = dvalues[o, s, i]


@register_kernel("TopKGradient", CUDA)
def topk_grad_launch(dvalues, indices, dx):
    fill_launch(dx.reshape(dx.size), 0)
    if dvalues.size:
        topk_grad_kernel[blocks_for(dvalues.size), THREADS](dvalues, indices, dx)
