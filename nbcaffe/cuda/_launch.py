"""Launch geometry and the elementwise kernel factories shared by the CUDA mirror modules.

Kernels use grid-stride loops, so any grid size is correct and :func:`blocks_for` only
tunes occupancy.  Scalar functions come from nbcaffe/ops/ and are compiled here with
``cuda.jit(device=True)``: the maths is written once for both devices.
"""

from __future__ import annotations

from numba import config, cuda

from nbcaffe.ops._elementwise import BinaryKernels

# The simulator runs every CUDA thread as a Python thread and every syncthreads as a barrier
# between them, so under it the same kernels run with smaller blocks (the code paths,
# reductions included, are unchanged; only the sizes shrink).
SIMULATED = bool(config.ENABLE_CUDASIM)
THREADS = 64 if SIMULATED else 256  # threads per block of the 1-D elementwise kernels
ROW_THREADS = 8 if SIMULATED else 128  # threads per block of row reductions (softmax, losses)
TILE = 16  # tile edge of the GEMM kernels (small shapes need one block either way)


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
    else:
        raise ValueError("binary_elementwise supports up to 1 parameter")
    return BinaryKernels(same, strided)


@cuda.jit
def copy_kernel(x, y):
    """y[i] = x[i] over flat device arrays (casting to y's dtype)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i]


def copy_launch(x, y):
    copy_kernel[blocks_for(x.size), THREADS](x, y)
