"""Launch geometry and the elementwise kernel factories shared by the CUDA mirror modules.

Kernels use grid-stride loops, so any grid size is correct and :func:`blocks_for` only
tunes occupancy.  Scalar functions come from nbcaffe/ops/ and are compiled here with
``cuda.jit(device=True)``: the maths is written once for both devices.
"""

from __future__ import annotations

import numba
from numba import config, cuda

from nbcaffe.ops._elementwise import BinaryKernels, BroadcastGradKernels

# The simulator runs every CUDA thread as a Python thread and every syncthreads as a barrier
# between them, so under it the same kernels run with smaller blocks (the code paths,
# reductions included, are unchanged; only the sizes shrink).
SIMULATED = bool(config.ENABLE_CUDASIM)
THREADS = 64 if SIMULATED else 256  # threads per block of the 1-D elementwise kernels
ROW_THREADS = 8 if SIMULATED else 128  # threads per block of row reductions (softmax, losses)
TILE = 16  # tile edge of the GEMM kernels (small shapes need one block either way)
# Broadcast-gradient reductions switch from one thread per target element to one block per
# target element when there are fewer targets than this and at least ROW_THREADS terms each
# (untuned: chosen so a scalar or per-channel gradient of a large tensor is not summed by a
# handful of threads, while bias-like gradients with many targets keep coalesced columns).
BLOCK_REDUCE_MAX_TARGETS = 4096


def blocks_for(n, threads=THREADS, cap=4096):
    """Blocks for n elements with grid-stride loops (at least 1, at most ``cap``)."""
    return max(1, min(cap, (n + threads - 1) // threads))


def unary_elementwise(scalar, n_params=0):
    """A launcher ``launch(x, y, *params)`` computing y[i] = scalar(x[i], *params)."""
    f = cuda.jit(device=True)(scalar)
    if n_params == 0:
        @cuda.jit
        def kernel(x, y):
            """y[i] = f(x[i]) over flat device arrays of equal length."""
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                y[i] = f(x[i])

        def launch(x, y):
            kernel[blocks_for(x.size), THREADS](x, y)
    elif n_params == 1:
        @cuda.jit
        def kernel(x, y, p0):
            """y[i] = f(x[i], p0)."""
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                y[i] = f(x[i], p0)

        def launch(x, y, p0):
            kernel[blocks_for(x.size), THREADS](x, y, p0)
    elif n_params == 2:
        @cuda.jit
        def kernel(x, y, p0, p1):
            """y[i] = f(x[i], p0, p1)."""
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                y[i] = f(x[i], p0, p1)

        def launch(x, y, p0, p1):
            kernel[blocks_for(x.size), THREADS](x, y, p0, p1)
    else:
        raise ValueError("unary_elementwise supports up to 2 parameters")
    return launch


def binary_elementwise(scalar, n_params=0):
    """:class:`BinaryKernels` launchers with the CPU kernels' signatures.

    ``same(a, b, c, *p)`` for equal flat sizes; ``strided(a, b, c, shape, sa, sb, *p)`` where
    each thread decodes its flat output index over ``shape`` (device int64 arrays) and reads a
    and b at the dot product of the index with their strides (0 = broadcast).
    """
    f = cuda.jit(device=True)(scalar)
    if n_params == 0:
        @cuda.jit
        def same_kernel(a, b, c):
            """c[i] = f(a[i], b[i])."""
            for i in range(cuda.grid(1), c.size, cuda.gridsize(1)):
                c[i] = f(a[i], b[i])

        @cuda.jit
        def strided_kernel(a, b, c, shape, sa, sb):
            """c[i] = f(a[off_a(i)], b[off_b(i)]) with broadcast strides."""
            ndim = shape.size
            for i in range(cuda.grid(1), c.size, cuda.gridsize(1)):
                rest = i
                oa = 0
                ob = 0
                for d in range(ndim - 1, -1, -1):
                    k = rest % shape[d]
                    rest //= shape[d]
                    oa += k * sa[d]
                    ob += k * sb[d]
                c[i] = f(a[oa], b[ob])

        def same(a, b, c):
            same_kernel[blocks_for(c.size), THREADS](a, b, c)

        def strided(a, b, c, shape, sa, sb):
            strided_kernel[blocks_for(c.size), THREADS](a, b, c, shape, sa, sb)
    elif n_params == 1:
        @cuda.jit
        def same_kernel(a, b, c, p0):
            """c[i] = f(a[i], b[i], p0)."""
            for i in range(cuda.grid(1), c.size, cuda.gridsize(1)):
                c[i] = f(a[i], b[i], p0)

        @cuda.jit
        def strided_kernel(a, b, c, shape, sa, sb, p0):
            """c[i] = f(a[off_a(i)], b[off_b(i)], p0) with broadcast strides."""
            ndim = shape.size
            for i in range(cuda.grid(1), c.size, cuda.gridsize(1)):
                rest = i
                oa = 0
                ob = 0
                for d in range(ndim - 1, -1, -1):
                    k = rest % shape[d]
                    rest //= shape[d]
                    oa += k * sa[d]
                    ob += k * sb[d]
                c[i] = f(a[oa], b[ob], p0)

        def same(a, b, c, p0):
            same_kernel[blocks_for(c.size), THREADS](a, b, c, p0)

        def strided(a, b, c, shape, sa, sb, p0):
            strided_kernel[blocks_for(c.size), THREADS](a, b, c, shape, sa, sb, p0)
    elif n_params == 2:
        @cuda.jit
        def same_kernel(a, b, c, p0, p1):
            """c[i] = f(a[i], b[i], p0, p1)."""
            for i in range(cuda.grid(1), c.size, cuda.gridsize(1)):
                c[i] = f(a[i], b[i], p0, p1)

        @cuda.jit
        def strided_kernel(a, b, c, shape, sa, sb, p0, p1):
            """c[i] = f(a[off_a(i)], b[off_b(i)], p0, p1) with broadcast strides."""
            ndim = shape.size
            for i in range(cuda.grid(1), c.size, cuda.gridsize(1)):
                rest = i
                oa = 0
                ob = 0
                for d in range(ndim - 1, -1, -1):
                    k = rest % shape[d]
                    rest //= shape[d]
                    oa += k * sa[d]
                    ob += k * sb[d]
                c[i] = f(a[oa], b[ob], p0, p1)

        def same(a, b, c, p0, p1):
            same_kernel[blocks_for(c.size), THREADS](a, b, c, p0, p1)

        def strided(a, b, c, shape, sa, sb, p0, p1):
            strided_kernel[blocks_for(c.size), THREADS](a, b, c, shape, sa, sb, p0, p1)
    else:
        raise ValueError("binary_elementwise supports up to 2 parameters")
    return BinaryKernels(same, strided)


def broadcast_gradient(grad_a, grad_b):
    """:class:`BroadcastGradKernels` launchers with the CPU kernels' signatures.

    ``same(dc, c, a, b, da, db)``: one thread per element.  ``strided(dc, c, a, b, da, db,
    shape, sa, sb)``: for each target (dA with A's strides, dB with B's), a target of C's size
    is written by one thread per element; a smaller one is a sum over the C positions that
    broadcast from each target element.  Those sums run one thread per target element
    (adjacent threads read adjacent columns of dC: coalesced, no atomics, a fixed summation
    order so results do not change between runs) or, for few targets with many terms each
    (a scalar B, per-channel B), one block per target element with a shared-memory tree.
    Offsets are decoded from ``shape`` and the strides: dims where the target's stride is 0
    are the summed ones, the others address the target element.
    """
    fa = cuda.jit(device=True)(grad_a)
    fb = cuda.jit(device=True)(grad_b)

    @cuda.jit(device=True)
    def partial(which, dc, c, a, b, oc, oa, ob):
        """The partial of target ``which`` (0: dA, 1: dB) at C offset oc, A offset oa, B offset ob."""
        if which == 0:
            return fa(dc[oc], c[oc], a[oa], b[ob])
        return fb(dc[oc], c[oc], a[oa], b[ob])

    @cuda.jit(device=True)
    def offsets(index, shape, sa, sb, st, summed):
        """(C, A, B) offsets of ``index`` decoded over the dims with st == 0 (summed) or != 0."""
        rest = index
        oc = 0
        oa = 0
        ob = 0
        step = 1
        for d in range(shape.size - 1, -1, -1):
            n = shape[d]
            if (st[d] == 0) == summed:
                k = rest % n
                rest //= n
                oc += k * step
                oa += k * sa[d]
                ob += k * sb[d]
            step *= n
        return oc, oa, ob

    @cuda.jit
    def same_kernel(dc, c, a, b, da, db):
        """da[i] = fa(dc[i], c[i], a[i], b[i]); db[i] likewise (flat, equal sizes)."""
        for i in range(cuda.grid(1), dc.size, cuda.gridsize(1)):
            da[i] = fa(dc[i], c[i], a[i], b[i])
            db[i] = fb(dc[i], c[i], a[i], b[i])

    @cuda.jit
    def map_kernel(dc, c, a, b, t, shape, sa, sb, which):
        """t[i] = partial at C position i, for a target t of C's size and layout."""
        for i in range(cuda.grid(1), dc.size, cuda.gridsize(1)):
            rest = i
            oa = 0
            ob = 0
            for d in range(shape.size - 1, -1, -1):
                k = rest % shape[d]
                rest //= shape[d]
                oa += k * sa[d]
                ob += k * sb[d]
            t[i] = partial(which, dc, c, a, b, i, oa, ob)

    @cuda.jit
    def reduce_threads_kernel(dc, c, a, b, t, shape, sa, sb, which):
        """t[j] = sum of the partials broadcast from target element j; one thread per j."""
        st = sa if which == 0 else sb
        terms = dc.size // t.size
        for j in range(cuda.grid(1), t.size, cuda.gridsize(1)):
            base_c, base_a, base_b = offsets(j, shape, sa, sb, st, False)
            acc = 0.0
            for r in range(terms):
                oc, oa, ob = offsets(r, shape, sa, sb, st, True)
                acc += partial(which, dc, c, a, b, base_c + oc, base_a + oa, base_b + ob)
            t[j] = acc

    @cuda.jit
    def reduce_block_kernel(dc, c, a, b, t, shape, sa, sb, which):
        """As reduce_threads_kernel with one block per target element (grid-stride over them)."""
        sums = cuda.shared.array(ROW_THREADS, numba.float64)
        tid = cuda.threadIdx.x
        st = sa if which == 0 else sb
        terms = dc.size // t.size
        for j in range(cuda.blockIdx.x, t.size, cuda.gridDim.x):
            base_c, base_a, base_b = offsets(j, shape, sa, sb, st, False)
            acc = 0.0
            for r in range(tid, terms, ROW_THREADS):
                oc, oa, ob = offsets(r, shape, sa, sb, st, True)
                acc += partial(which, dc, c, a, b, base_c + oc, base_a + oa, base_b + ob)
            sums[tid] = acc
            cuda.syncthreads()  # every partial sum is written before the tree reads it
            block_sum(sums, tid)
            if tid == 0:
                t[j] = sums[0]
            cuda.syncthreads()  # thread 0 has read sums[0] before the next target overwrites it

    def same(dc, c, a, b, da, db):
        if dc.size:
            same_kernel[blocks_for(dc.size), THREADS](dc, c, a, b, da, db)

    def strided(dc, c, a, b, da, db, shape, sa, sb):
        for t, which in ((da, 0), (db, 1)):
            if t.size == 0:
                continue
            if t.size == dc.size:
                map_kernel[blocks_for(dc.size), THREADS](dc, c, a, b, t, shape, sa, sb, which)
            elif t.size < BLOCK_REDUCE_MAX_TARGETS and dc.size // t.size >= ROW_THREADS:
                reduce_block_kernel[min(t.size, 4096), ROW_THREADS](dc, c, a, b, t, shape, sa, sb, which)
            else:
                reduce_threads_kernel[blocks_for(t.size), THREADS](dc, c, a, b, t, shape, sa, sb, which)

    return BroadcastGradKernels(same, strided)


@cuda.jit(device=True)
def block_max(values, tid):
    """Tree-reduce values[0:ROW_THREADS] to its maximum in values[0] (all threads call it)."""
    step = ROW_THREADS // 2
    while step > 0:
        if tid < step and values[tid + step] > values[tid]:
            values[tid] = values[tid + step]
        cuda.syncthreads()  # every thread must see this level's results before the next
        step //= 2


@cuda.jit(device=True)
def block_sum(values, tid):
    """Tree-reduce values[0:ROW_THREADS] to its sum in values[0] (all threads call it)."""
    step = ROW_THREADS // 2
    while step > 0:
        if tid < step:
            values[tid] += values[tid + step]
        cuda.syncthreads()  # every thread must see this level's results before the next
        step //= 2


@cuda.jit
def copy_kernel(x, y):
    """y[i] = x[i] over flat device arrays (casting to y's dtype)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i]


def copy_launch(x, y):
    copy_kernel[blocks_for(x.size), THREADS](x, y)
