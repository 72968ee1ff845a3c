"""Axis reductions: ReduceSum/Mean/Max/Min over ``axes`` (``keepdims``) and
ReduceFront{Sum,Mean,Max} / ReduceBack{Sum,Mean,Max} over the first / last ``num_reduce_dim``
dims, with their gradients.  All of them run the reduction-plan kernels of _reduce_util.py
(reduce_cpu, reduce_grad_cpu); the whole-tensor and variadic reductions are in reduction.py."""

from __future__ import annotations

import functools
import math

import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, I, O, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import choose, flat
from nbcaffe.ops._reduce_util import MODE_MAX, MODE_MIN, MODE_SUM, REDUCE_CPU, reduce_grad_cpu, reduce_plan
from nbcaffe.registry import register_op

# ------------------------------------------------------------------------ ReduceSum / Mean / Max / Min


def reduce_axes(axes, ndim, where="axes"):
    """Caffe2's axes rule: empty = every axis; negatives count from the end; sorted.  Raises
    ShapeError for out-of-range or repeated axes."""
    if not axes:
        return tuple(range(ndim))
    canonical = sorted(schema.canonical_axis(int(a), ndim, f"{where} entry") for a in axes)
    if len(set(canonical)) != len(canonical):
        raise errors.ShapeError(f"{where}={tuple(axes)} names an axis twice (for a {ndim}-d input)")
    return tuple(canonical)


def _reduced_count(shape, axes):
    return schema.prod([shape[a] for a in axes])


def _reduce_float_only(cls, dtype):
    if cls.mode == MODE_SUM and cls.average and np.dtype(dtype).kind != "f":
        raise errors.ShapeError(f"{cls.__name__} needs a floating point input, got {np.dtype(dtype).name}")
    if np.dtype(dtype).kind not in "fiu":
        raise errors.ShapeError(f"{cls.__name__} needs a numeric input, got {np.dtype(dtype).name}")


def _check_not_empty(cls, shape, axes):
    kept = schema.prod([n for d, n in enumerate(shape) if d not in axes])
    if cls.mode != MODE_SUM and _reduced_count(shape, axes) == 0 and kept:
        raise errors.ShapeError(f"{cls.__name__} over axes {axes} of {tuple(shape)}: a max/min over zero"
                                f" elements is undefined")


class _AxesReduction(Operator):
    inputs, outputs = ("data",), ("reduced",)
    args = {"axes": schema.Arg("ints", (), "axes to reduce (default: all)"), "keepdims": True}
    mode = MODE_SUM
    average = False
    cpu = REDUCE_CPU

    @classmethod
    def infer(cls, args, shapes, dtypes):
        shape = tuple(shapes[0])
        axes = reduce_axes(args["axes"], len(shape))
        _reduce_float_only(cls, dtypes[0])
        _check_not_empty(cls, shape, axes)
        if args["keepdims"]:
            out = tuple(1 if d in axes else n for d, n in enumerate(shape))
        else:
            out = tuple(n for d, n in enumerate(shape) if d not in axes)
        return [out], [dtypes[0]]

    def bind(self, inputs, outputs):
        x = inputs[0]
        shape = tuple(x.shape)
        axes = reduce_axes(self.args["axes"], len(shape))
        count = _reduced_count(shape, axes)
        scale = (1.0 / count if count else float("nan")) if type(self).average else 1.0
        dims, flags = (self.ctx.from_host(v) for v in reduce_plan(shape, axes))
        return functools.partial(choose(self.kernel, x.size), flat(x), flat(outputs[0]), dims, flags,
                                 type(self).mode, scale)


def _axes_reduce_reference(np_fn, X, axes, keepdims):
    axes = tuple(a % X.ndim for a in axes) if axes else tuple(range(X.ndim))
    return (np.asarray(np_fn(X, axis=axes, keepdims=bool(keepdims))).astype(X.dtype),)


_REDUCE_GRADIENT_INPUTS = [GO(0), I(0), O(0)]


@register_op
class ReduceSum(_AxesReduction):
    """reduced = Σ data over ``axes`` (default: all); ``keepdims`` (default 1) keeps the reduced
    dims as 1s, else drops them.  Negative axes count from the end."""

    gradient = simple_gradient("ReduceSumGradient", _REDUCE_GRADIENT_INPUTS, [GI(0)])

    @staticmethod
    def reference(data, axes=(), keepdims=True):
        return _axes_reduce_reference(lambda x, **kw: np.sum(x.astype(np.float64) if x.dtype.kind == "f" else x, **kw),
                                      data, axes, keepdims)


@register_op
class ReduceMean(_AxesReduction):
    """reduced = mean of data over ``axes`` (default: all); ``keepdims`` as ReduceSum.  Float
    only; the mean over zero elements is NaN."""

    average = True
    gradient = simple_gradient("ReduceMeanGradient", _REDUCE_GRADIENT_INPUTS, [GI(0)])

    @staticmethod
    def reference(data, axes=(), keepdims=True):
        def mean(x, axis, keepdims):
            count = math.prod(x.shape[a] for a in axis)
            with np.errstate(invalid="ignore", divide="ignore"):  # an empty mean is NaN, without a warning
                return np.sum(x.astype(np.float64), axis=axis, keepdims=keepdims) / count

        return _axes_reduce_reference(mean, data, axes, keepdims)


@register_op
class ReduceMax(_AxesReduction):
    """reduced = max of data over ``axes`` (default: all); ``keepdims`` as ReduceSum.  NaN
    propagates; a max over zero elements is an error."""

    mode = MODE_MAX
    gradient = simple_gradient("ReduceMaxGradient", _REDUCE_GRADIENT_INPUTS, [GI(0)])

    @staticmethod
    def reference(data, axes=(), keepdims=True):
        return _axes_reduce_reference(np.max, data, axes, keepdims)


@register_op
class ReduceMin(_AxesReduction):
    """reduced = min of data over ``axes`` (default: all); ``keepdims`` as ReduceSum.  NaN
    propagates; a min over zero elements is an error."""

    mode = MODE_MIN
    gradient = simple_gradient("ReduceMinGradient", _REDUCE_GRADIENT_INPUTS, [GI(0)])

    @staticmethod
    def reference(data, axes=(), keepdims=True):
        return _axes_reduce_reference(np.min, data, axes, keepdims)


class _AxesReductionGradient(Operator):
    inputs, outputs = ("dY", "X", "Y"), ("dX",)
    args = {"axes": schema.Arg("ints", ()), "keepdims": True}
    gradient = None
    mode = MODE_SUM
    average = False
    cpu = staticmethod(reduce_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        x = tuple(shapes[1])
        axes = reduce_axes(args["axes"], len(x))
        kept = schema.prod(n for d, n in enumerate(x) if d not in axes)
        for name, shape in (("dY", shapes[0]), ("Y", shapes[2])):
            if schema.prod(shape) != kept:
                raise errors.ShapeError(f"{name} {tuple(shape)} does not match X {x} reduced over axes {axes}")
        return [x], [dtypes[0]]

    def bind(self, inputs, outputs):
        dy, x, y = inputs
        shape = tuple(x.shape)
        axes = reduce_axes(self.args["axes"], len(shape))
        count = _reduced_count(shape, axes)
        scale = 1.0 / count if type(self).average and count else 1.0
        dims, flags = (self.ctx.from_host(v) for v in reduce_plan(shape, axes))
        return functools.partial(self.kernel, flat(dy), flat(x), flat(y), flat(outputs[0]), dims, flags,
                                 type(self).mode, scale)


def _kept_view(dY, X, axes):
    """dY reshaped to X's rank with 1s on the reduced axes (reference helper)."""
    axes = tuple(a % X.ndim for a in axes) if axes else tuple(range(X.ndim))
    return dY.reshape(tuple(1 if d in axes else n for d, n in enumerate(X.shape))), axes


@register_op
class ReduceSumGradient(_AxesReductionGradient):
    """dX = dY broadcast back over the reduced axes (inputs dY, X, Y as in Caffe2)."""

    @staticmethod
    def reference(dY, X, Y, axes=(), keepdims=True):
        g, _ = _kept_view(dY, X, axes)
        return (np.broadcast_to(g, X.shape).astype(dY.dtype),)


@register_op
class ReduceMeanGradient(_AxesReductionGradient):
    """dX = dY / (number of reduced elements), broadcast back over the reduced axes."""

    average = True

    @staticmethod
    def reference(dY, X, Y, axes=(), keepdims=True):
        g, axes = _kept_view(dY, X, axes)
        count = max(1, int(np.prod([X.shape[a] for a in axes])))
        return ((np.broadcast_to(g, X.shape) / count).astype(dY.dtype),)


def _extreme_reference(dY, X, Y, axes):
    g, _ = _kept_view(dY, X, axes)
    y, _ = _kept_view(Y, X, axes)
    return (np.where(X == y, g, 0).astype(dY.dtype),)


@register_op
class ReduceMaxGradient(_AxesReductionGradient):
    """dX = dY where X equals the maximum Y of its window (every tie receives it), else 0."""

    mode = MODE_MAX

    @staticmethod
    def reference(dY, X, Y, axes=(), keepdims=True):
        return _extreme_reference(dY, X, Y, axes)


@register_op
class ReduceMinGradient(_AxesReductionGradient):
    """dX = dY where X equals the minimum Y of its window (every tie receives it), else 0."""

    mode = MODE_MIN

    @staticmethod
    def reference(dY, X, Y, axes=(), keepdims=True):
        return _extreme_reference(dY, X, Y, axes)


# ------------------------------------------------------------------------ ReduceFront* / ReduceBack*


def front_back_axes(cls, num, ndim):
    if not 0 <= num <= ndim:
        raise errors.ShapeError(f"num_reduce_dim={num} must be in [0, {ndim}] for a {ndim}-d input")
    return tuple(range(num)) if cls.front else tuple(range(ndim - num, ndim))


class _FrontBackReduction(Operator):
    inputs, outputs = ("X",), ("Y",)
    args = {"num_reduce_dim": 1}
    front = True
    mode = MODE_SUM
    average = False
    cpu = REDUCE_CPU

    @classmethod
    def infer(cls, args, shapes, dtypes):
        shape = tuple(shapes[0])
        axes = front_back_axes(cls, args["num_reduce_dim"], len(shape))
        _reduce_float_only(cls, dtypes[0])
        _check_not_empty(cls, shape, axes)
        return [tuple(n for d, n in enumerate(shape) if d not in axes)], [dtypes[0]]

    def bind(self, inputs, outputs):
        x = inputs[0]
        shape = tuple(x.shape)
        axes = front_back_axes(type(self), self.args["num_reduce_dim"], len(shape))
        count = _reduced_count(shape, axes)
        scale = (1.0 / count if count else float("nan")) if type(self).average else 1.0
        dims, flags = (self.ctx.from_host(v) for v in reduce_plan(shape, axes))
        return functools.partial(choose(self.kernel, x.size), flat(x), flat(outputs[0]), dims, flags,
                                 type(self).mode, scale)


def _front_back_reference(np_fn, X, num, front):
    axes = tuple(range(num)) if front else tuple(range(X.ndim - num, X.ndim))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.asarray(np_fn(X.astype(np.float64) if X.dtype.kind == "f" else X, axis=axes)).astype(X.dtype),)


class _FrontBackGradient(Operator):
    inputs, outputs = ("dY", "X"), ("dX",)
    args = {"num_reduce_dim": 1}
    gradient = None
    front = True
    mode = MODE_SUM
    average = False
    cpu = staticmethod(reduce_grad_cpu)

    @classmethod
    def infer(cls, args, shapes, dtypes):
        x = tuple(shapes[1])
        axes = front_back_axes(cls, args["num_reduce_dim"], len(x))
        kept = schema.prod(n for d, n in enumerate(x) if d not in axes)
        for i in [0] + ([2] if len(shapes) > 2 else []):
            if schema.prod(shapes[i]) != kept:
                raise errors.ShapeError(f"{cls.inputs[i]} {tuple(shapes[i])} does not match X {x} reduced over"
                                        f" axes {axes}")
        return [x], [dtypes[0]]

    def bind(self, inputs, outputs):
        dy, x = inputs[0], inputs[1]
        y = inputs[2] if len(inputs) > 2 else dy  # sums and means do not read Y
        shape = tuple(x.shape)
        axes = front_back_axes(type(self), self.args["num_reduce_dim"], len(shape))
        count = _reduced_count(shape, axes)
        scale = 1.0 / count if type(self).average and count else 1.0
        dims, flags = (self.ctx.from_host(v) for v in reduce_plan(shape, axes))
        return functools.partial(self.kernel, flat(dy), flat(x), flat(y), flat(outputs[0]), dims, flags,
                                 type(self).mode, scale)


def _front_back_grad_reference(dY, X, num, front, scale_by_count):
    kept = X.shape[num:] if front else X.shape[:X.ndim - num]
    view = (1,) * num + tuple(kept) if front else tuple(kept) + (1,) * num
    count = max(1, int(np.prod(X.shape[:num] if front else X.shape[X.ndim - num:])))
    g = np.broadcast_to(dY.reshape(view), X.shape)
    return ((g / count if scale_by_count else g).astype(dY.dtype),)


def _front_back_max_grad_reference(dY, X, Y, num, front):
    kept = X.shape[num:] if front else X.shape[:X.ndim - num]
    view = (1,) * num + tuple(kept) if front else tuple(kept) + (1,) * num
    return (np.where(X == Y.reshape(view), dY.reshape(view), 0).astype(dY.dtype),)


_SUM_GRAD_INPUTS = [GO(0), I(0)]
_MAX_GRAD_INPUTS = [GO(0), I(0), O(0)]


@register_op
class ReduceFrontSum(_FrontBackReduction):
    """Y = Σ X over its first ``num_reduce_dim`` dims (default 1); Y has the remaining dims."""

    gradient = simple_gradient("ReduceFrontSumGradient", _SUM_GRAD_INPUTS, [GI(0)])

    @staticmethod
    def reference(X, num_reduce_dim=1):
        return _front_back_reference(np.sum, X, num_reduce_dim, True)


@register_op
class ReduceFrontMean(_FrontBackReduction):
    """Y = mean of X over its first ``num_reduce_dim`` dims (default 1); float only."""

    average = True
    gradient = simple_gradient("ReduceFrontMeanGradient", _SUM_GRAD_INPUTS, [GI(0)])

    @staticmethod
    def reference(X, num_reduce_dim=1):
        return _front_back_reference(np.mean, X, num_reduce_dim, True)


@register_op
class ReduceFrontMax(_FrontBackReduction):
    """Y = max of X over its first ``num_reduce_dim`` dims (default 1); NaN propagates."""

    mode = MODE_MAX
    gradient = simple_gradient("ReduceFrontMaxGradient", _MAX_GRAD_INPUTS, [GI(0)])

    @staticmethod
    def reference(X, num_reduce_dim=1):
        return _front_back_reference(np.max, X, num_reduce_dim, True)


@register_op
class ReduceBackSum(_FrontBackReduction):
    """Y = Σ X over its last ``num_reduce_dim`` dims (default 1); Y has the leading dims."""

    front = False
    gradient = simple_gradient("ReduceBackSumGradient", _SUM_GRAD_INPUTS, [GI(0)])

    @staticmethod
    def reference(X, num_reduce_dim=1):
        return _front_back_reference(np.sum, X, num_reduce_dim, False)


@register_op
class ReduceBackMean(_FrontBackReduction):
    """Y = mean of X over its last ``num_reduce_dim`` dims (default 1); float only."""

    front = False
    average = True
    gradient = simple_gradient("ReduceBackMeanGradient", _SUM_GRAD_INPUTS, [GI(0)])

    @staticmethod
    def reference(X, num_reduce_dim=1):
        return _front_back_reference(np.mean, X, num_reduce_dim, False)


@register_op
class ReduceBackMax(_FrontBackReduction):
    """Y = max of X over its last ``num_reduce_dim`` dims (default 1); NaN propagates."""

    front = False
    mode = MODE_MAX
    gradient = simple_gradient("ReduceBackMaxGradient", _MAX_GRAD_INPUTS, [GI(0)])

    @staticmethod
    def reference(X, num_reduce_dim=1):
        return _front_back_reference(np.max, X, num_reduce_dim, False)


@register_op
class ReduceFrontSumGradient(_FrontBackGradient):
    """dX = dY broadcast over X's first ``num_reduce_dim`` dims (inputs dY, X)."""

    @staticmethod
    def reference(dY, X, num_reduce_dim=1):
        return _front_back_grad_reference(dY, X, num_reduce_dim, True, False)


@register_op
class ReduceFrontMeanGradient(_FrontBackGradient):
    """dX = dY / count broadcast over X's first ``num_reduce_dim`` dims (inputs dY, X)."""

    average = True

    @staticmethod
    def reference(dY, X, num_reduce_dim=1):
        return _front_back_grad_reference(dY, X, num_reduce_dim, True, True)


@register_op
class ReduceFrontMaxGradient(_FrontBackGradient):
    """dX = dY where X equals its column's max Y (ties all receive it), else 0 (inputs dY, X, Y)."""

    inputs = ("dY", "X", "Y")
    mode = MODE_MAX

    @staticmethod
    def reference(dY, X, Y, num_reduce_dim=1):
        return _front_back_max_grad_reference(dY, X, Y, num_reduce_dim, True)


@register_op
class ReduceBackSumGradient(_FrontBackGradient):
    """dX = dY broadcast over X's last ``num_reduce_dim`` dims (inputs dY, X)."""

    front = False

    @staticmethod
    def reference(dY, X, num_reduce_dim=1):
        return _front_back_grad_reference(dY, X, num_reduce_dim, False, False)


@register_op
class ReduceBackMeanGradient(_FrontBackGradient):
    """dX = dY / count broadcast over X's last ``num_reduce_dim`` dims (inputs dY, X)."""

    front = False
    average = True

    @staticmethod
    def reference(dY, X, num_reduce_dim=1):
        return _front_back_grad_reference(dY, X, num_reduce_dim, False, True)


@register_op
class ReduceBackMaxGradient(_FrontBackGradient):
    """dX = dY where X equals its row's max Y (ties all receive it), else 0 (inputs dY, X, Y)."""

    inputs = ("dY", "X", "Y")
    front = False
    mode = MODE_MAX

    @staticmethod
    def reference(dY, X, Y, num_reduce_dim=1):
        return _front_back_max_grad_reference(dY, X, Y, num_reduce_dim, False)
