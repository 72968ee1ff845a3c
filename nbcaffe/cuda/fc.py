"""CUDA kernels for nbcaffe/ops/fc.py: a shared-memory tiled GEMM with the bias fused."""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import TILE  # TILE x TILE threads per block, one per output element
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@functools.cache
def _fc_kernel(dtype_name):
    """The tiled kernel for one element type (shared arrays need a compile-time dtype)."""
    nb_type = numba.from_dtype(np.dtype(dtype_name))

    @cuda.jit
    def fc_kernel(x, w, b, y):
        """y (M, N) = x (M, K) · w (N, K)ᵀ + b (N): one thread per y element, K in TILE chunks."""
        x_tile = cuda.shared.array((TILE, TILE), nb_type)
        w_tile = cuda.shared.array((TILE, TILE), nb_type)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty  # index into M
        col = cuda.blockIdx.x * TILE + tx  # index into N
        m = x.shape[0]
        k_total = x.shape[1]
        n = w.shape[0]
        acc = nb_type(0)
        for k0 in range(0, k_total, TILE):
            # x_tile[m_local, k_local]; w_tile[k_local, n_local] (stored transposed so the inner
            # loop reads consecutive shared-memory banks across tx).  Global reads run along
            # k, i.e. along tx, so they coalesce.
            if row < m and k0 + tx < k_total:
                x_tile[ty, tx] = x[row, k0 + tx]
            else:
                x_tile[ty, tx] = 0
            w_row = cuda.blockIdx.x * TILE + ty
            if w_row < n and k0 + tx < k_total:
                w_tile[tx, ty] = w[w_row, k0 + tx]
            else:
                w_tile[tx, ty] = 0
            cuda.syncthreads()  # both tiles loaded before any thread reads them
            for kk in range(TILE):
                acc += x_tile[ty, kk] * w_tile[kk, tx]
            cuda.syncthreads()  # all reads done before the next iteration overwrites the tiles
        if row < m and col < n:
            y[row, col] = acc + b[col]

    return fc_kernel


@register_kernel("FC", CUDA)
def fc_launch(x2, w2, b, y2):
    """Launcher with fc_cpu's signature (device arrays)."""
    m, n = y2.shape
    if m == 0 or n == 0:
        return
    grid = ((n + TILE - 1) // TILE, (m + TILE - 1) // TILE)
    _fc_kernel(np.dtype(y2.dtype).name)[grid, (TILE, TILE)](x2, w2, b, y2)
