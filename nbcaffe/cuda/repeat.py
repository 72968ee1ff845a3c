"""CUDA kernels for nbcaffe/ops/repeat.py (same ops, same order).

Expand and Tile: the shared strided copy.  ExpandGradient: one thread per dY element with an
atomic add into dX (summation order of broadcast targets varies between runs; float64 atomics
need compute capability 6.0).  TileGradient: one thread per dX element summing its tiles in
order (deterministic).
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._array_util import LAYOUT, fill_launch
from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

register_kernel("Expand", CUDA)(LAYOUT)


@cuda.jit
def sum_to_kernel(dy, dx, shape, sx):
    """dx[.] += dy[i] (atomic) over flat C-order dy of ``shape`` (dx strides sx, 0 = summed)."""
    ndim = shape.size
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        rest = i
        ox = 0
        for d in range(ndim - 1, -1, -1):
            k = rest % shape[d]
            rest //= shape[d]
            ox += k * sx[d]
        cuda.atomic.add(dx, ox, dy[i])


@register_kernel("ExpandGradient", CUDA)
def sum_to_launch(dy, dx, shape, sx):
    fill_launch(dx, 0)
    if dy.size:
        sum_to_kernel[blocks_for(dy.size), THREADS](dy, dx, shape, sx)


register_kernel("Tile", CUDA)(LAYOUT)


@cuda.jit
def tile_grad_kernel(dy, dx):
    """dx[o, k] = Σ_t dy[o, t, k] (dy (outer, tiles, block), dx (outer, block))."""
    outer, tiles, block = dy.shape
    for i in range(cuda.grid(1), outer * block, cuda.gridsize(1)):
        o = i // block
        k = i % block
        total = dy[o, 0, k] * 0
        for t in range(tiles):
            total += dy[o, t, k]
        dx[o, k] = total


@register_kernel("TileGradient", CUDA)
def tile_grad_launch(dy, dx):
    if dx.size:
        tile_grad_kernel[blocks_for(dx.size), THREADS](dy, dx)
