"""Pooling: MaxPool, AveragePool (1D/2D/3D aliases), their gradients, MaxPoolWithIndex.

Windows follow nbcaffe/ops/_conv_pool.py (Caffe2's ConvPoolOpBase): kernel, stride, pads,
dilation, order, legacy_pad (incl. Caffe's ceil mode), global_pooling.  Every window is
clipped to the image: padding never takes part in a maximum, and AveragePool divides by the
number of image cells in the window unless ``count_include_pad=1`` (later Caffe2), which
divides by the full kernel volume (caffe2/operators/pool_op.cc).  A window made only of
padding is an error (pads must be smaller than the kernel).

Max semantics (one rule for MaxPool, its gradient and MaxPoolWithIndex): the window is
scanned in row-major order (d, h, w); the first maximum wins ties, and NaN propagates (the
first NaN wins).  So MaxPoolGradient routes each dY to exactly one X cell, like cuDNN and
PyTorch; Caffe2's CPU MaxPoolGradient gave it to *every* cell equal to the maximum ("this
may multi-assign gradients", pool_op.cc), which over-counts ties.  Caffe2's maxima skipped
NaN; here a NaN input gives a NaN output instead of a silently finite one.

MaxPoolWithIndex (Caffe2: CUDA only, NCHW 2-D) runs on CPU and CUDA, in both orders and 1-3
spatial dims; its mask holds, per output, the argmax's flat index within its (n, c) spatial
volume (h·W + w in 2-D), as int32 in a 1-D tensor of Y.size elements (Caffe2's shape).

The numba kernels are in nbcaffe/ops/_pool_kernels.py; this module holds their drivers (which
split the planes or images over nbcaffe.threads' pool), the NumPy references and the ops.
"""

from __future__ import annotations

import functools

import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, I, O, simple_gradient
from nbcaffe.devices import CPU
from nbcaffe.operator import Operator
from nbcaffe.ops import _conv_pool as cp
from nbcaffe.ops._pool_kernels import (
    avg_pool_grad_nchw,
    avg_pool_grad_nhwc,
    avg_pool_nchw,
    avg_pool_nhwc,
    avg_pool_rows_nchw,
    index_grad_nchw,
    index_grad_nhwc,
    max_pool_2x2_nchw,
    max_pool_grad_2x2_nchw,
    max_pool_grad_nchw,
    max_pool_grad_nhwc,
    max_pool_grad_tiled_nchw,
    max_pool_nchw,
    max_pool_nhwc,
    max_pool_rows_nchw,
    max_pool_tiled_nchw,
    separable,
    tiled,
)
from nbcaffe.registry import register_op

# ============================================================================ drivers (the registered CPU kernels)
# Each takes 5-D views and the plan (nchw, include_pad, want_mask) + canonical window.


def _planes(a, nchw):
    """NCHW 5-D (N, C, D, H, W) -> (N*C, D, H, W); NHWC views pass through."""
    return a.reshape((-1,) + tuple(a.shape[2:])) if nchw else a


# below this many input elements a pooling op runs on the calling thread only
PARALLEL_MIN = 1 << 15
# ... the forward ops, whose row passes are quick: CIFAR-10 quick's 3x3/2 max pool on
# 8x32x32x32 took 0.25 ms on one thread and 0.28 ms split over two on the quiet VM
FORWARD_PARALLEL_MIN = 1 << 19


def _split(n, size, fn, minimum=PARALLEL_MIN):
    """fn(lo, hi) over [0, n) in chunks on the conv task pool (one chunk when small)."""
    tasks = 1 if size < minimum or n < 2 else min(n, 4 * cp.num_threads())
    chunk = -(-n // tasks)
    cp.run_tasks(lambda t, _worker: fn(t * chunk, min(n, (t + 1) * chunk)), -(-n // chunk), tasks)


def max_pool_cpu(x, y, mask, plan):
    """MaxPool / MaxPoolWithIndex: x, y 5-D views; mask (Y.size,) int32 when plan[2]."""
    nchw, _, want_mask = plan[:3]
    p = plan[3:]
    per = p[3] * p[4] * p[5]
    if nchw:
        xs, ys = _planes(x, 1), _planes(y, 1)
        if not want_mask and tiled(p):
            if p[7] == 2 and p[8] == 2 and p[6] == 1:
                _split(xs.shape[0], x.size, lambda a, b: max_pool_2x2_nchw(xs[a:b], ys[a:b]), FORWARD_PARALLEL_MIN)
            else:
                _split(xs.shape[0], x.size, lambda a, b: max_pool_tiled_nchw(xs[a:b], ys[a:b], p),
                       FORWARD_PARALLEL_MIN)
            return
        if not want_mask and separable(p):
            _split(xs.shape[0], x.size, lambda a, b: max_pool_rows_nchw(xs[a:b], ys[a:b], p), FORWARD_PARALLEL_MIN)
            return
        _split(xs.shape[0], x.size,
               lambda a, b: max_pool_nchw(xs[a:b], ys[a:b], mask[a * per:b * per] if want_mask else mask, want_mask, p))
    else:
        c = x.shape[4]
        _split(x.shape[0], x.size, lambda a, b: max_pool_nhwc(
            x[a:b], y[a:b], mask[a * per * c:b * per * c] if want_mask else mask, want_mask, p))


def avg_pool_cpu(x, y, plan):
    nchw, include_pad = plan[:2]
    p = plan[3:]
    if nchw:
        xs, ys = _planes(x, 1), _planes(y, 1)
        kernel = avg_pool_rows_nchw if separable(p) else avg_pool_nchw
        _split(xs.shape[0], x.size, lambda a, b: kernel(xs[a:b], ys[a:b], include_pad, p), FORWARD_PARALLEL_MIN)
    else:
        _split(x.shape[0], x.size, lambda a, b: avg_pool_nhwc(x[a:b], y[a:b], include_pad, p))


def max_pool_grad_cpu(x, y, dy, dx, plan, scratch):
    """MaxPoolGradient (y is not read: the argmax is recomputed from x with the forward's rule)."""
    p = plan[3:]
    if plan[0]:
        xs, gs, ds = _planes(x, 1), _planes(dy, 1), _planes(dx, 1)
        if tiled(p) and p[7] == 2 and p[8] == 2 and p[6] == 1:
            zero = np.zeros(1, dx.dtype)[0]
            _split(xs.shape[0], x.size, lambda a, b: max_pool_grad_2x2_nchw(xs[a:b], gs[a:b], ds[a:b], zero))
            return
        kernel = max_pool_grad_tiled_nchw if tiled(p) else max_pool_grad_nchw
        _split(xs.shape[0], x.size, lambda a, b: kernel(xs[a:b], gs[a:b], ds[a:b], p))
    else:
        _split(x.shape[0], x.size, lambda a, b: max_pool_grad_nhwc(x[a:b], dy[a:b], dx[a:b], p))


def avg_pool_grad_cpu(x, y, dy, dx, plan, scratch):
    p = plan[3:]
    if plan[0]:
        gs, ds = _planes(dy, 1), _planes(dx, 1)
        _split(gs.shape[0], dx.size, lambda a, b: avg_pool_grad_nchw(gs[a:b], ds[a:b], plan[1], p))
    else:
        _split(dy.shape[0], dx.size, lambda a, b: avg_pool_grad_nhwc(dy[a:b], dx[a:b], plan[1], p))


def index_grad_cpu(x, dy, mask, dx, plan):
    p = plan[3:]
    per = p[3] * p[4] * p[5]
    if plan[0]:
        gs, ds = _planes(dy, 1), _planes(dx, 1)
        _split(gs.shape[0], dx.size, lambda a, b: index_grad_nchw(gs[a:b], mask[a * per:b * per], ds[a:b], p))
    else:
        c = dx.shape[4]
        _split(dy.shape[0], dx.size,
               lambda a, b: index_grad_nhwc(dy[a:b], mask[a * per * c:b * per * c], dx[a:b], p))


# ============================================================================ NumPy references


def _window_taps(geo):
    """Per tap (kd, kh, kw): the padded-input slices of every output position."""
    canon = geo.canonical()
    k, s, d, out = canon[6:9], canon[9:12], canon[12:15], canon[3:6]
    for kd in range(k[0]):
        for kh in range(k[1]):
            for kw in range(k[2]):
                yield tuple(slice(t * dd, t * dd + ss * (o - 1) + 1, ss)
                            for t, dd, ss, o in zip((kd, kh, kw), d, s, out))


def _padded(x5, geo, fill):
    """(values, inside) of x5 (N, C, D, H, W) padded with `fill` by the effective pads."""
    heads = (0,) * (3 - geo.rank) + geo.pad_head
    tails = (0,) * (3 - geo.rank) + geo.pad_tail
    spatial = x5.shape[2:]
    shape = x5.shape[:2] + tuple(s + h + max(t, 0) for s, h, t in zip(spatial, heads, tails))
    values = np.full(shape, fill, np.float64)
    inside = np.zeros(shape, bool)
    index = (slice(None), slice(None)) + tuple(slice(h, h + s) for h, s in zip(heads, spatial))
    values[index] = x5
    inside[index] = True
    return values, inside


def _ncdhw(a, geo):
    a = np.asarray(a, np.float64)
    if geo.order == "NHWC":
        a = np.moveaxis(a, -1, 1)
    return a.reshape(a.shape[:2] + (1,) * (3 - geo.rank) + a.shape[2:])


def _back(a5, geo, dtype):
    a = a5.reshape(a5.shape[:2] + a5.shape[5 - geo.rank:])
    if geo.order == "NHWC":
        a = np.moveaxis(a, 1, -1)
    return np.ascontiguousarray(a).astype(dtype)


def reference_argmax(x, geo):
    """(max (N, C, Do, Ho, Wo), flat padded index of the argmax) with the first-max / first-NaN rule."""
    values, inside = _padded(_ncdhw(x, geo), geo, -np.inf)
    flat_index = np.arange(values[0, 0].size).reshape(values.shape[2:])
    best = bidx = None
    for sl in _window_taps(geo):
        index = (slice(None), slice(None)) + sl
        v, ok = values[index], inside[index]
        where = np.broadcast_to(flat_index[sl], v.shape)
        if best is None:
            best = np.full(v.shape, -np.inf)
            bidx = np.full(v.shape, -1)
        take = ok & ((bidx < 0) | (v > best) | (np.isnan(v) & ~np.isnan(best)))
        best = np.where(take, v, best)
        bidx = np.where(take, where, bidx)
    return best, bidx, values.shape[2:]


def _unpad_index(bidx, padded_shape, geo):
    """Flat padded index -> flat index within the unpadded spatial volume."""
    heads = (0,) * (3 - geo.rank) + geo.pad_head
    spatial = (1,) * (3 - geo.rank) + geo.in_sp
    coords = np.unravel_index(bidx, padded_shape)
    return np.ravel_multi_index(tuple(c - h for c, h in zip(coords, heads)), spatial)


def reference_max_pool_grad(x, dy, geo):
    best, bidx, padded_shape = reference_argmax(x, geo)
    x5 = _ncdhw(x, geo)
    n, c = x5.shape[:2]
    flat = _unpad_index(bidx, padded_shape, geo).reshape(n, c, -1)
    g = _ncdhw(dy, geo).reshape(n, c, -1)
    dx = np.zeros((n, c, x5[0, 0].size))
    for i in range(n):
        for j in range(c):
            np.add.at(dx[i, j], flat[i, j], g[i, j])
    return dx.reshape(x5.shape)


def reference_avg(x, geo, include_pad):
    values, inside = _padded(_ncdhw(x, geo), geo, 0.0)
    total = count = 0.0
    for sl in _window_taps(geo):
        index = (slice(None), slice(None)) + sl
        total = total + values[index]
        count = count + inside[index]
    if include_pad:
        count = float(np.prod(geo.kernel))
    return total / count


def reference_avg_grad(dy, geo, include_pad, x_shape):
    x5_shape = _ncdhw(np.zeros(x_shape), geo).shape
    values, inside = _padded(np.zeros(x5_shape), geo, 0.0)
    count = 0.0
    for sl in _window_taps(geo):
        count = count + inside[(slice(None), slice(None)) + sl]
    if include_pad:
        count = float(np.prod(geo.kernel))
    g = _ncdhw(dy, geo) / count
    grad = np.zeros(values.shape)
    for sl in _window_taps(geo):
        index = (slice(None), slice(None)) + sl
        view = grad[index]
        view += np.where(inside[index], g, 0.0)
    heads = (0,) * (3 - geo.rank) + geo.pad_head
    crop = (slice(None), slice(None)) + tuple(slice(h, h + s) for h, s in zip(heads, x5_shape[2:]))
    return grad[crop]


# ============================================================================ ops


def pool_geometry(window, x_shape, where="X"):
    geo = cp.resolve(window, x_shape, where)
    cp.check_pool_windows(geo, window.legacy_pad, where)
    return geo


def _plan(geo, include_pad=False, want_mask=False):
    return (int(geo.order == "NCHW"), int(include_pad), int(want_mask)) + geo.canonical()


def _five(a, geo):
    shape = tuple(a.shape)
    if geo.order == "NCHW":
        return a.reshape(shape[:2] + (1,) * (3 - geo.rank) + shape[2:])
    return a.reshape(shape[:1] + (1,) * (3 - geo.rank) + shape[1:])


def _check_float(dtypes, names):
    for name, dtype in zip(names, dtypes):
        if np.dtype(dtype).kind != "f":
            raise errors.ShapeError(f"{name} must be a floating tensor, got {np.dtype(dtype).name}")


def pool_gradient_maker(op, g_output):
    """Caffe2's GetPoolGradient: <Type>Gradient(X, Y, dY) -> dX (MaxPool2D -> MaxPool2DGradient)."""
    return simple_gradient(op.type + "Gradient", [I(0), O(0), GO(0)], [GI(0)])(op, g_output)


class _Pool(Operator):
    inputs, outputs = ("X",), ("Y",)
    args = cp.window_args("pool")
    gradient = staticmethod(pool_gradient_maker)

    def setup(self):
        self.window = cp.parse_window(self.args, self.where(), "pool")

    def reference_kwargs(self):
        return {"window": self.window, "include_pad": bool(self.args.get("count_include_pad", False))}

    @classmethod
    def infer(cls, args, shapes, dtypes):
        window = cp.parse_window(args, cls.__name__, "pool")
        geo = pool_geometry(window, shapes[0])
        _check_float(dtypes[:1], ["X"])
        return [geo.shape(geo.channels, geo.out_sp)], [dtypes[0]]


@register_op(aliases=("MaxPool1D", "MaxPool2D", "MaxPool3D"))
class MaxPool(_Pool):
    """Y[n, c, o] = max over the window of o (clipped to the image) of X[n, c, ·]; ties: the first
    maximum in row-major window order; NaN propagates.

    Arguments: kernel | kernel_h + kernel_w | kernels, stride(s) (1), pad(s) | pad_t/l/b/r (0),
    dilation(s) (1), order ('NCHW'), legacy_pad (0-3; 3 = Caffe's ceil mode), global_pooling (0).
    Aliases MaxPool1D/2D/3D; 1-3 spatial dims.
    """

    cpu = staticmethod(max_pool_cpu)

    @staticmethod
    def reference(X, *, window, include_pad=False):
        geo = pool_geometry(window, X.shape)
        best, _, _ = reference_argmax(X, geo)
        return (_back(best, geo, X.dtype),)

    def bind(self, inputs, outputs):
        geo = pool_geometry(self.window, inputs[0].shape)
        mask = self.ctx.empty((1,), np.int32)
        return functools.partial(self.kernel, _five(inputs[0], geo), _five(outputs[0], geo), mask, _plan(geo))


@register_op(aliases=("AveragePool1D", "AveragePool2D", "AveragePool3D"))
class AveragePool(_Pool):
    """Y[n, c, o] = Σ_{window of o ∩ image} X[n, c, ·] / count, count = the image cells in the window,
    or the full kernel volume with count_include_pad=1.

    Arguments as MaxPool plus count_include_pad (0).  Aliases AveragePool1D/2D/3D.
    """

    args = {**cp.window_args("pool"), "count_include_pad": False}
    cpu = staticmethod(avg_pool_cpu)

    @staticmethod
    def reference(X, *, window, include_pad=False):
        geo = pool_geometry(window, X.shape)
        return (_back(reference_avg(X, geo, include_pad), geo, X.dtype),)

    def bind(self, inputs, outputs):
        geo = pool_geometry(self.window, inputs[0].shape)
        return functools.partial(self.kernel, _five(inputs[0], geo), _five(outputs[0], geo),
                                 _plan(geo, self.args["count_include_pad"]))


class _PoolGradient(Operator):
    inputs, outputs = ("X", "Y", "dY"), ("dX",)
    args = cp.window_args("pool")
    gradient = None

    setup = _Pool.setup
    reference_kwargs = _Pool.reference_kwargs

    @classmethod
    def infer(cls, args, shapes, dtypes):
        window = cp.parse_window(args, cls.__name__, "pool")
        geo = pool_geometry(window, shapes[0])
        expected = geo.shape(geo.channels, geo.out_sp)
        for name, shape in (("Y", shapes[1]), ("dY", shapes[2])):
            if tuple(shape) != expected:
                raise errors.ShapeError(f"{name} {tuple(shape)} must have the pooling output shape {expected} of X"
                                        f" {tuple(shapes[0])} ({geo.describe()})")
        _check_float(dtypes, ["X", "Y", "dY"])
        return [tuple(shapes[0])], [dtypes[0]]

    def scratch(self, geo, x):
        return ()

    def bind(self, inputs, outputs):
        x, y, dy = inputs
        geo = pool_geometry(self.window, x.shape)
        plan = _plan(geo, self.args.get("count_include_pad", False))
        return functools.partial(self.kernel, _five(x, geo), _five(y, geo), _five(dy, geo), _five(outputs[0], geo),
                                 plan, self.scratch(geo, x))


@register_op(aliases=("MaxPool1DGradient", "MaxPool2DGradient", "MaxPool3DGradient"))
class MaxPoolGradient(_PoolGradient):
    """dX[n, c, i] = Σ over the windows whose first maximum is X[n, c, i] of dY (one cell per window,
    the same argmax rule as MaxPool; Y is accepted for Caffe2's signature but not read)."""

    cpu = staticmethod(max_pool_grad_cpu)

    @staticmethod
    def reference(X, Y, dY, *, window, include_pad=False):
        geo = pool_geometry(window, X.shape)
        return (_back(reference_max_pool_grad(X, dY, geo), geo, X.dtype),)

    def scratch(self, geo, x):
        # the CUDA kernel finds each window's argmax first (one int per output), then gathers
        if self.ctx.device_type == CPU:
            return ()
        return (self.ctx.empty((max(1, geo.batch * geo.channels * int(np.prod(geo.out_sp))),), np.int32),)


@register_op(aliases=("AveragePool1DGradient", "AveragePool2DGradient", "AveragePool3DGradient"))
class AveragePoolGradient(_PoolGradient):
    """dX[n, c, i] = Σ over the windows w containing i of dY[n, c, w] / count(w), count as AveragePool."""

    args = {**cp.window_args("pool"), "count_include_pad": False}
    cpu = staticmethod(avg_pool_grad_cpu)

    @staticmethod
    def reference(X, Y, dY, *, window, include_pad=False):
        geo = pool_geometry(window, X.shape)
        return (_back(reference_avg_grad(dY, geo, include_pad, X.shape), geo, X.dtype),)


@register_op
class MaxPoolWithIndex(_Pool):
    """Y = MaxPool(X); Index[o] = the argmax's flat index within its (n, c) spatial volume (h·W + w in
    2-D), int32, 1-D with Y.size entries (Caffe2's shape; NHWC: in (n, spatial, c) order of Y).

    Same window arguments and argmax rule as MaxPool.  Caffe2 had it on CUDA for NCHW 2-D only;
    here CPU and CUDA, both orders, 1-3 spatial dims.
    """

    outputs = ("Y", "Index")
    cpu = staticmethod(max_pool_cpu)
    gradient = simple_gradient("MaxPoolWithIndexGradient", [I(0), GO(0), O(1)], [GI(0)])

    @classmethod
    def infer(cls, args, shapes, dtypes):
        (y_shape,), (dtype,) = _Pool.infer.__func__(cls, args, shapes, dtypes)
        return [y_shape, (int(np.prod(y_shape)),)], [dtype, np.dtype(np.int32)]

    @staticmethod
    def reference(X, *, window, include_pad=False):
        geo = pool_geometry(window, X.shape)
        best, bidx, padded_shape = reference_argmax(X, geo)
        index = _unpad_index(bidx, padded_shape, geo)
        index = _back(index.astype(np.float64), geo, np.int32).reshape(-1)
        return (_back(best, geo, X.dtype), index)

    def bind(self, inputs, outputs):
        geo = pool_geometry(self.window, inputs[0].shape)
        return functools.partial(self.kernel, _five(inputs[0], geo), _five(outputs[0], geo), outputs[1],
                                 _plan(geo, want_mask=True))


@register_op
class MaxPoolWithIndexGradient(Operator):
    """dX[n, c, i] = Σ_{o : Index[o] = i} dY[n, c, o] (inputs X, dY, Index from MaxPoolWithIndex)."""

    inputs, outputs = ("X", "dY", "Index"), ("dX",)
    args = cp.window_args("pool")
    gradient = None
    cpu = staticmethod(index_grad_cpu)

    setup = _Pool.setup
    reference_kwargs = _Pool.reference_kwargs

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "MaxPoolWithIndexGradient", "pool")
        geo = pool_geometry(window, shapes[0])
        expected = geo.shape(geo.channels, geo.out_sp)
        if tuple(shapes[1]) != expected:
            raise errors.ShapeError(f"dY {tuple(shapes[1])} must have the pooling output shape {expected}")
        if tuple(shapes[2]) != (int(np.prod(expected)),) or np.dtype(dtypes[2]) != np.int32:
            raise errors.ShapeError(f"Index {tuple(shapes[2])} {np.dtype(dtypes[2]).name} must be int32 of shape"
                                    f" ({int(np.prod(expected))},), as MaxPoolWithIndex writes it")
        _check_float(dtypes[:2], ["X", "dY"])
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(X, dY, Index, *, window, include_pad=False):
        geo = pool_geometry(window, X.shape)
        x5 = _ncdhw(X, geo)
        n, c = x5.shape[:2]
        idx = _ncdhw(np.asarray(Index).reshape(dY.shape), geo).astype(np.int64).reshape(n, c, -1)
        g = _ncdhw(dY, geo).reshape(n, c, -1)
        dx = np.zeros((n, c, x5[0, 0].size))
        for i in range(n):
            for j in range(c):
                np.add.at(dx[i, j], idx[i, j], g[i, j])
        return (_back(dx.reshape(x5.shape), geo, X.dtype),)

    def bind(self, inputs, outputs):
        x, dy, mask = inputs
        geo = pool_geometry(self.window, x.shape)
        return functools.partial(self.kernel, _five(x, geo), _five(dy, geo), mask, _five(outputs[0], geo),
                                 _plan(geo))
