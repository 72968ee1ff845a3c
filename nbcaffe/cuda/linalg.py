"""CUDA kernels for nbcaffe/ops/linalg.py (same ops, same order): a batched tiled
shared-memory GEMM with transpose flags serving MatMul, BatchMatMul and BatchMatMulGradient,
and the ElementwiseLinear kernels."""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import THREADS, TILE, blocks_for  # TILE x TILE threads per GEMM block
from nbcaffe.cuda.reduction import reduce_launch
from nbcaffe.devices import CUDA
from nbcaffe.ops.reduction import MODE_SUM
from nbcaffe.registry import register_kernel

MAX_GRID_Z = 65535  # CUDA's limit on gridDim.z; the kernel strides over further batches


@functools.cache
def _bmm_kernel(dtype_name, trans_a, trans_b):
    """The GEMM for one element type and transpose choice (shared arrays need a compile-time
    dtype; the flags are compile-time so the unused load paths fold away)."""
    nb_type = numba.from_dtype(np.dtype(dtype_name))

    @cuda.jit
    def bmm_kernel(a, b, c, offsets, m, n, k):
        """For each batch z: c[z*M*N:(z+1)*M*N] (M, N) = op(A_z) · op(B_z), all arrays flat.
        A_z starts at a[offsets[0, z]], row-major (M, K), or (K, M) when trans_a; B_z starts at
        b[offsets[1, z]], (K, N), or (N, K) when trans_b.  One thread per c element of a TILE x
        TILE block, K in TILE chunks; batches along grid dim z (grid-stride)."""
        # a_tile[i, q] = op(A)[row0 + i, k0 + q], b_tile[q, j] = op(B)[k0 + q, col0 + j]; a padding
        # column so the transposed stores ([tx, ty]) fall in distinct shared-memory banks
        a_tile = cuda.shared.array((TILE, TILE + 1), nb_type)
        b_tile = cuda.shared.array((TILE, TILE + 1), nb_type)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * TILE  # first row of this block's c tile (index into M)
        col0 = cuda.blockIdx.x * TILE  # first column (index into N)
        for z in range(cuda.blockIdx.z, offsets.shape[1], cuda.gridDim.z):
            a0 = offsets[0, z]
            b0 = offsets[1, z]
            acc = nb_type(0)
            for k0 in range(0, k, TILE):
                # Each load runs tx along the stored matrix's contiguous dim, so a warp's global
                # reads coalesce whichever operand is transposed.
                if trans_a:  # stored (K, M): thread loads element (k0 + ty, row0 + tx)
                    if k0 + ty < k and row0 + tx < m:
                        a_tile[tx, ty] = a[a0 + (k0 + ty) * m + row0 + tx]
                    else:
                        a_tile[tx, ty] = 0
                else:  # stored (M, K): thread loads element (row0 + ty, k0 + tx)
                    if row0 + ty < m and k0 + tx < k:
                        a_tile[ty, tx] = a[a0 + (row0 + ty) * k + k0 + tx]
                    else:
                        a_tile[ty, tx] = 0
                if trans_b:  # stored (N, K): thread loads element (col0 + ty, k0 + tx)
                    if col0 + ty < n and k0 + tx < k:
                        b_tile[tx, ty] = b[b0 + (col0 + ty) * k + k0 + tx]
                    else:
                        b_tile[tx, ty] = 0
                else:  # stored (K, N): thread loads element (k0 + ty, col0 + tx)
                    if k0 + ty < k and col0 + tx < n:
                        b_tile[ty, tx] = b[b0 + (k0 + ty) * n + col0 + tx]
                    else:
                        b_tile[ty, tx] = 0
                cuda.syncthreads()  # both tiles loaded before any thread reads them
                for q in range(TILE):
                    acc += a_tile[ty, q] * b_tile[q, tx]
                cuda.syncthreads()  # all reads done before the next chunk overwrites the tiles
            row = row0 + ty
            col = col0 + tx
            if row < m and col < n:
                c[z * m * n + row * n + col] = acc

    return bmm_kernel


def bmm_launch(a, b, c, trans_a, trans_b, offsets, m, n, k):
    """c (flat, batch x M x N) = op(A_z) · op(B_z) for every batch of ``offsets`` (device arrays)."""
    batches = tuple(offsets.shape)[1]
    if batches == 0 or m == 0 or n == 0:
        return
    grid = ((n + TILE - 1) // TILE, (m + TILE - 1) // TILE, min(batches, MAX_GRID_Z))
    kernel = _bmm_kernel(np.dtype(c.dtype).name, bool(trans_a), bool(trans_b))
    kernel[grid, (TILE, TILE)](a.reshape(a.size), b.reshape(b.size), c.reshape(c.size), offsets, m, n, k)


@register_kernel("MatMul", CUDA)
def matmul_launch(a2, b2, y2, trans_a, trans_b, offsets):
    """Launcher with matmul_cpu's signature: y2 (M, N) = op(a2) · op(b2)."""
    m, n = tuple(y2.shape)
    k = tuple(a2.shape)[0] if trans_a else tuple(a2.shape)[1]
    bmm_launch(a2, b2, y2, trans_a, trans_b, offsets, m, n, k)


@register_kernel("BatchMatMul", CUDA)
def batch_matmul_launch(a, b, y, trans_a, trans_b, offsets):
    """Launcher with batch_matmul_cpu's signature: a, b, y of equal rank (..., rows, cols)."""
    a_shape, y_shape = tuple(a.shape), tuple(y.shape)
    m, n = y_shape[-2], y_shape[-1]
    k = a_shape[-2] if trans_a else a_shape[-1]
    bmm_launch(a, b, y, trans_a, trans_b, offsets, m, n, k)


@register_kernel("BatchMatMulGradient", CUDA)
def batch_matmul_grad_launch(x1, x2, t1, t2, offsets, full, reduce, out, dims, flags):
    """Launcher with batch_matmul_grad_cpu's signature: the batched GEMM into ``full``, then a
    sum over the broadcast batch dims into ``out`` when ``reduce``."""
    batch_matmul_launch(x1, x2, full, t1, t2, offsets)
    if reduce:
        reduce_launch(full.reshape(full.size), out, dims, flags, MODE_SUM, 1.0)


@cuda.jit
def elementwise_linear_kernel(x, w, b, y):
    """y[i, j] = x[i, j] * w[j] + b[j] for (N, D) arrays; one thread per element (grid-stride)."""
    d = x.shape[1]
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        i = idx // d
        j = idx % d
        y[i, j] = x[i, j] * w[j] + b[j]


@register_kernel("ElementwiseLinear", CUDA)
def elementwise_linear_launch(x, w, b, y):
    if x.size:
        elementwise_linear_kernel[blocks_for(x.size), THREADS](x, w, b, y)


@cuda.jit
def elementwise_linear_dx_kernel(dy, w, dx):
    """dx[i, j] = dy[i, j] * w[j]; one thread per element."""
    d = dy.shape[1]
    for idx in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        i = idx // d
        j = idx % d
        dx[i, j] = dy[i, j] * w[j]


@cuda.jit
def elementwise_linear_dwb_kernel(dy, x, dw, db):
    """dw[j] = Σ_i dy[i, j] x[i, j], db[j] = Σ_i dy[i, j]; one thread per column, so a warp reads
    adjacent elements of each row (coalesced) in a fixed order."""
    n = dy.shape[0]
    for j in range(cuda.grid(1), dw.size, cuda.gridsize(1)):
        acc_w = 0.0
        acc_b = 0.0
        for i in range(n):
            g = dy[i, j]
            acc_w += g * x[i, j]
            acc_b += g
        dw[j] = acc_w
        db[j] = acc_b


@register_kernel("ElementwiseLinearGradient", CUDA)
def elementwise_linear_grad_launch(dy, x, w, dx, dw, db):
    if dy.size:
        elementwise_linear_dx_kernel[blocks_for(dy.size), THREADS](dy, w, dx)
    if dw.size:
        elementwise_linear_dwb_kernel[blocks_for(dw.size), THREADS](dy, x, dw, db)
