"""CUDA kernels for nbcaffe/ops/fc.py: a shared-memory tiled GEMM (transpose flags, optional
fused bias) serving FC and FCGradient, plus a column sum for the bias gradient."""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import THREADS, TILE, blocks_for  # TILE x TILE threads per GEMM block
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@functools.cache
def _gemm_kernel(dtype_name, trans_a, trans_b, with_bias):
    """The tiled kernel for one element type and transpose/bias choice (compile-time flags:
    shared arrays need a compile-time dtype, and the flags fold away the unused loads)."""
    nb_type = numba.from_dtype(np.dtype(dtype_name))

    @cuda.jit
    def gemm_kernel(a, b, bias, c):
        """c (M, N) = op(a) · op(b) [+ bias (N)]: op(a) is (M, K) — a (M, K), or a (K, M) when
        trans_a — and op(b) is (K, N) — b (K, N), or b (N, K) when trans_b.  One thread per c
        element, K in TILE chunks."""
        # a_tile[m_local, k_local], b_tile[k_local, n_local]; one padding column so the
        # transposed stores (index [tx, ty]) hit distinct shared-memory banks
        a_tile = cuda.shared.array((TILE, TILE + 1), nb_type)
        b_tile = cuda.shared.array((TILE, TILE + 1), nb_type)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * TILE  # first row of c (index into M) of this block
        col0 = cuda.blockIdx.x * TILE  # first column of c (index into N)
        m = c.shape[0]
        n = c.shape[1]
        k_total = a.shape[0] if trans_a else a.shape[1]
        acc = nb_type(0)
        for k0 in range(0, k_total, TILE):
            # Every global load below runs along the source's contiguous dim with tx, so the
            # reads of a warp coalesce whichever operand is transposed.
            if trans_a:  # a (K, M): thread loads a[k0 + ty, row0 + tx]
                if k0 + ty < k_total and row0 + tx < m:
                    a_tile[tx, ty] = a[k0 + ty, row0 + tx]
                else:
                    a_tile[tx, ty] = 0
            else:  # a (M, K): thread loads a[row0 + ty, k0 + tx]
                if row0 + ty < m and k0 + tx < k_total:
                    a_tile[ty, tx] = a[row0 + ty, k0 + tx]
                else:
                    a_tile[ty, tx] = 0
            if trans_b:  # b (N, K): thread loads b[col0 + ty, k0 + tx]
                if col0 + ty < n and k0 + tx < k_total:
                    b_tile[tx, ty] = b[col0 + ty, k0 + tx]
                else:
                    b_tile[tx, ty] = 0
            else:  # b (K, N): thread loads b[k0 + ty, col0 + tx]
                if k0 + ty < k_total and col0 + tx < n:
                    b_tile[ty, tx] = b[k0 + ty, col0 + tx]
                else:
                    b_tile[ty, tx] = 0
            cuda.syncthreads()  # both tiles loaded before any thread reads them
            for kk in range(TILE):
                acc += a_tile[ty, kk] * b_tile[kk, tx]
            cuda.syncthreads()  # all reads done before the next iteration overwrites the tiles
        row = row0 + ty
        col = col0 + tx
        if row < m and col < n:
            if with_bias:
                c[row, col] = acc + bias[col]
            else:
                c[row, col] = acc

    return gemm_kernel


def gemm_launch(a, b, bias, c, trans_a, trans_b):
    """c = op(a) · op(b) (+ bias when not None) on device arrays; see :func:`_gemm_kernel`."""
    m, n = tuple(c.shape)
    if m == 0 or n == 0:
        return
    with_bias = bias is not None
    if not with_bias:
        bias = c.reshape(c.size)  # never read; a 1-D array keeps one compiled signature
    grid = ((n + TILE - 1) // TILE, (m + TILE - 1) // TILE)
    _gemm_kernel(np.dtype(c.dtype).name, trans_a, trans_b, with_bias)[grid, (TILE, TILE)](a, b, bias, c)


@register_kernel("FC", CUDA)
def fc_launch(x2, w2, b, y2):
    """Launcher with fc_cpu's signature (device arrays): y2 = x2 · w2ᵀ + b."""
    gemm_launch(x2, w2, b, y2, False, True)


@cuda.jit
def column_sum_kernel(x, out):
    """out[j] = sum_i x[i, j] for x (M, N); one thread per column, so the threads of a warp
    read adjacent elements of each row (coalesced), with a fixed summation order."""
    m = x.shape[0]
    n = x.shape[1]
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        acc = 0.0
        for i in range(m):
            acc += x[i, j]
        out[j] = acc


@register_kernel("FCGradient", CUDA)
def fc_gradient_launch(x2, w2, dy2, dw2, db, dx2):
    """Launcher with fc_gradient_cpu's signature: dW = dYᵀ · X, db = column sums of dY,
    dX = dY · W (device arrays, the 2-D views FCGradient binds; dx2 None: no dX)."""
    gemm_launch(dy2, x2, None, dw2, True, False)
    n = db.size
    if n:
        column_sum_kernel[blocks_for(n), THREADS](dy2, db)
    if dx2 is not None:
        gemm_launch(dy2, w2, None, dx2, False, False)
