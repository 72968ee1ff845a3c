"""CUDA kernels for nbcaffe/ops/logical.py (same ops, same order).

Where: one thread per output element decodes its index over the output shape into an offset
per operand.  WhereGradient: one thread per dOut element, atomic adds into dX or dY (the
summation order of broadcast targets varies between runs; float64 atomics need compute
capability 6.0).
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._array_util import fill_launch
from nbcaffe.cuda._launch import THREADS, binary_elementwise, blocks_for, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import logical as cpu
from nbcaffe.registry import register_kernel

register_kernel("And", CUDA)(binary_elementwise(cpu.logical_and))
register_kernel("Or", CUDA)(binary_elementwise(cpu.logical_or))
register_kernel("Xor", CUDA)(binary_elementwise(cpu.logical_xor))
register_kernel("Not", CUDA)(unary_elementwise(cpu.logical_not))


@cuda.jit
def where_kernel(c, x, y, out, shape, sc, sx, sy):
    """out[i] = x[.] if c[.] else y[.] over flat C-order out (operand strides sc/sx/sy)."""
    ndim = shape.size
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        rest = i
        oc = 0
        ox = 0
        oy = 0
        for d in range(ndim - 1, -1, -1):
            k = rest % shape[d]
            rest //= shape[d]
            oc += k * sc[d]
            ox += k * sx[d]
            oy += k * sy[d]
        out[i] = x[ox] if c[oc] else y[oy]


@register_kernel("Where", CUDA)
def where_launch(c, x, y, out, shape, sc, sx, sy):
    where_kernel[blocks_for(out.size), THREADS](c, x, y, out, shape, sc, sx, sy)


@cuda.jit
def where_grad_kernel(c, dout, dx, dy, shape, sc, sx, sy):
    """dx[.] += dout[i] where c[.], else dy[.] += dout[i] (atomic; dx and dy zeroed first)."""
    ndim = shape.size
    for i in range(cuda.grid(1), dout.size, cuda.gridsize(1)):
        rest = i
        oc = 0
        ox = 0
        oy = 0
        for d in range(ndim - 1, -1, -1):
            k = rest % shape[d]
            rest //= shape[d]
            oc += k * sc[d]
            ox += k * sx[d]
            oy += k * sy[d]
        if c[oc]:
            cuda.atomic.add(dx, ox, dout[i])
        else:
            cuda.atomic.add(dy, oy, dout[i])


@register_kernel("WhereGradient", CUDA)
def where_grad_launch(c, dout, dx, dy, shape, sc, sx, sy):
    fill_launch(dx, 0)
    fill_launch(dy, 0)
    if dout.size:
        where_grad_kernel[blocks_for(dout.size), THREADS](c, dout, dx, dy, shape, sc, sx, sy)
