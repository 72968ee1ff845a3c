"""Normalization: SpatialBN, InstanceNorm, LayerNorm and LRN (+ gradient ops).

Channel-statistics kernels share one view of the input, ``x4 = (G, A, C, B)``: statistics
are taken per (g, c) over the A and B axes.

* SpatialBN (per channel over the batch and space): NCHW ``(1, N, C, H*W)``, NHWC
  ``(1, N*H*W, C, 1)``.
* InstanceNorm (per sample and channel over space): NCHW ``(N, 1, C, H*W)``, NHWC
  ``(N, H*W, C, 1)``.

So one moments helper, one affine helper and one gradient kernel serve both ops and both
orders.  Statistics accumulate in float64 (two passes: mean, then squared deviations) and
outputs are written as ``(x - mean) * alpha + bias``, which keeps precision when
``|mean| >> std``.  Every kernel is dtype-generic (float32 in nets, float64 in the gradient
checks); integer inputs are rejected by ``infer``.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, I, O
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

ORDERS = ("NCHW", "NHWC")


class Kernels:
    """A named set of kernels of one op (the CUDA mirror registers a set with the same names)."""

    def __init__(self, **kernels):
        self.__dict__.update(kernels)


# ------------------------------------------------------------------------ shape helpers


def check_order(order):
    if order not in ORDERS:
        raise errors.ArgumentError(f"order must be 'NCHW' or 'NHWC', got {order!r}")
    return order


def check_floating(dtype, what):
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise errors.ShapeError(f"{what} must be a floating point tensor, got {np.dtype(dtype).name}")


def channels(shape, order) -> int:
    """C of an (N, C, *spatial) or (N, *spatial, C) shape."""
    return int(shape[1] if order == "NCHW" else shape[-1])


def norm_view(shape, order, per_instance):
    """The (G, A, C, B) view described in the module docstring."""
    shape = tuple(int(d) for d in shape)
    n = shape[0]
    c = channels(shape, order)
    spatial = schema.prod(shape[2:]) if order == "NCHW" else schema.prod(shape[1:-1])
    if per_instance:
        return (n, 1, c, spatial) if order == "NCHW" else (n, spatial, c, 1)
    return (1, n, c, spatial) if order == "NCHW" else (1, n * spatial, c, 1)


def check_per_channel(shapes, names, count, x_shape, order):
    """Each named input (index, name) must hold ``count`` values (one per channel)."""
    for index, name in names:
        if schema.prod(shapes[index]) != count:
            raise errors.ShapeError(
                f"{name} {tuple(shapes[index])} must hold C={count} values (one per channel of X"
                f" {tuple(x_shape)} in {order} order)")


def _bcast_shape(ndim, axis, c):
    shape = [1] * ndim
    shape[axis] = c
    return shape


def _noop():
    pass


# ------------------------------------------------------------------------ CPU helpers


@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _moments_rows(x, stats):
    """_moments for channels-last data x (G, A, C): the channel loop is the contiguous one."""
    G, A, C = x.shape
    inv = 1.0 / A if A > 0 else 0.0
    for g in range(G):
        mean = stats[0, g]
        var = stats[1, g]
        for c in range(C):
            mean[c] = 0.0
            var[c] = 0.0
        for a in range(A):
            xr = x[g, a]
            for c in range(C):
                mean[c] += xr[c]
        for c in range(C):
            mean[c] *= inv
        for a in range(A):
            xr = x[g, a]
            for c in range(C):
                d = xr[c] - mean[c]
                var[c] += d * d
        for c in range(C):
            var[c] *= inv


@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _moments(x, stats):
    """stats[0, g, c] = mean, stats[1, g, c] = biased variance of x (G, A, C, B) over A, B.

    Two passes in float64; an empty reduction gives mean 0 and variance 0.
    """
    G, A, C, B = x.shape
    if B == 1:
        _moments_rows(x.reshape(G, A, C), stats)
        return
    n = A * B
    inv = 1.0 / n if n > 0 else 0.0
    for g in range(G):
        for c in range(C):
            stats[0, g, c] = 0.0
            stats[1, g, c] = 0.0
        for a in range(A):
            for c in range(C):
                xr = x[g, a, c]
                s = 0.0
                for b in range(B):
                    s += xr[b]
                stats[0, g, c] += s
        for c in range(C):
            stats[0, g, c] *= inv
        for a in range(A):
            for c in range(C):
                xr = x[g, a, c]
                m = stats[0, g, c]
                s = 0.0
                for b in range(B):
                    d = xr[b] - m
                    s += d * d
                stats[1, g, c] += s
        for c in range(C):
            stats[1, g, c] *= inv


@numba.njit(cache=True, error_model="numpy")
def _affine(x, mean, alpha, bias, y):
    """y = (x - mean[g, c]) * alpha[g, c] + bias[c] over x, y (G, A, C, B); y may alias x."""
    G, A, C, B = x.shape
    # NOTE: LLVM's runtime overlap check sends an aliased x/y to the scalar loop (3x slower), so
    # the in-place case reads and writes one array
    same = x.ctypes.data == y.ctypes.data
    if B == 1:  # channels-last: contiguous rows of C
        x3 = x.reshape(G, A, C)
        y3 = y.reshape(G, A, C)
        for g in range(G):
            m = mean[g]
            k = alpha[g]
            for a in range(A):
                yr = y3[g, a]
                xr = yr if same else x3[g, a]
                for c in range(C):
                    yr[c] = (xr[c] - m[c]) * k[c] + bias[c]
        return
    for g in range(G):
        for a in range(A):
            for c in range(C):
                m = mean[g, c]
                k = alpha[g, c]
                t = bias[c]
                yr = y[g, a, c]
                if same:
                    for b in range(B):
                        yr[b] = (yr[b] - m) * k + t
                else:
                    xr = x[g, a, c]
                    for b in range(B):
                        yr[b] = (xr[b] - m) * k + t


# ------------------------------------------------------------------------ SpatialBN


@numba.njit(cache=True, error_model="numpy")
def spatial_bn_train_cpu(x, scale, bias, running_mean, running_var, momentum, eps, saved_mean, saved_rstd,
                         stats, alpha, y):
    """Training SpatialBN on x (1, A, C, B): batch moments into stats (2, 1, C) float64, running
    stats (C,) updated in place, saved_mean / saved_rstd (C,), y = (x - mean) * scale * rstd + bias
    (alpha (1, C) float64 scratch).  An empty batch zeroes the saved stats and leaves the
    running ones alone (Caffe2)."""
    _moments(x, stats)
    n = x.shape[1] * x.shape[3]
    for c in range(x.shape[2]):
        if n == 0:
            saved_mean[c] = 0.0
            saved_rstd[c] = 0.0
            alpha[0, c] = 0.0
            continue
        m = stats[0, 0, c]
        v = stats[1, 0, c]
        running_mean[c] = running_mean[c] * momentum + m * (1.0 - momentum)
        running_var[c] = running_var[c] * momentum + v * (1.0 - momentum)
        r = 1.0 / math.sqrt(v + eps)
        saved_mean[c] = m
        saved_rstd[c] = r
        alpha[0, c] = scale[c] * r
    _affine(x, stats[0], alpha, bias, y)


@numba.njit(cache=True, error_model="numpy")
def spatial_bn_test_cpu(x, scale, bias, mean, var, eps, stats, alpha, y):
    """Inference SpatialBN: y = (x - mean) * scale / sqrt(var + eps) + bias, per channel of
    x (1, A, C, B); stats (2, 1, C) and alpha (1, C) are float64 scratch."""
    for c in range(x.shape[2]):
        stats[0, 0, c] = mean[c]
        alpha[0, c] = scale[c] / math.sqrt(var[c] + eps)
    _affine(x, stats[0], alpha, bias, y)


@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _grad_sums(x, dy, mean, sums):
    """sums[0, g, c] = sum dy, sums[1, g, c] = sum dy * (x - mean[g, c]) over A, B of (G, A, C, B)."""
    G, A, C, B = x.shape
    for g in range(G):
        s0 = sums[0, g]
        s1 = sums[1, g]
        for c in range(C):
            s0[c] = 0.0
            s1[c] = 0.0
        if B == 1:  # channels-last: contiguous rows of C
            x3 = x.reshape(G, A, C)
            dy3 = dy.reshape(G, A, C)
            m = mean[g]
            for a in range(A):
                xr = x3[g, a]
                dr = dy3[g, a]
                for c in range(C):
                    s0[c] += dr[c]
                    s1[c] += dr[c] * (xr[c] - m[c])
            continue
        for a in range(A):
            for c in range(C):
                xr = x[g, a, c]
                dr = dy[g, a, c]
                m = mean[g, c]
                t0 = 0.0
                t1 = 0.0
                for b in range(B):
                    t0 += dr[b]
                    t1 += dr[b] * (xr[b] - m)
                s0[c] += t0
                s1[c] += t1


@numba.njit(cache=True, error_model="numpy")
def norm_grad_cpu(x, dy, scale, mean, second, eps, frozen, sums, coef, dx, dscale, dbias):
    """Gradient of y = (x - mean) * rstd * scale[c] + bias[c] over x, dy, dx (G, A, C, B).

    mean, second: (G, C); second is rstd, or the variance when ``frozen`` (rstd = 1/sqrt(var +
    eps) and the statistics are constants: dx = scale * rstd * dy).  Otherwise the statistics
    are those of x over (A, B) and dx = scale * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
    dscale[c] = sum dy * xhat, dbias[c] = sum dy over (G, A, B).  sums (2, G, C) and coef
    (4, G, C) are float64 scratch.
    """
    G, A, C, B = x.shape
    n = A * B
    _grad_sums(x, dy, mean, sums)
    for c in range(C):
        ds = 0.0
        db = 0.0
        for g in range(G):
            r = 1.0 / math.sqrt(second[g, c] + eps) if frozen else second[g, c] * 1.0
            k = scale[c] * r
            coef[0, g, c] = k
            if frozen or n == 0:
                coef[1, g, c] = 0.0
                coef[2, g, c] = 0.0
            else:
                coef[1, g, c] = -k * r * r * sums[1, g, c] / n
                coef[2, g, c] = -k * sums[0, g, c] / n
            ds += r * sums[1, g, c]
            db += sums[0, g, c]
        dscale[c] = ds
        dbias[c] = db
    # dx = k0 * dy + k1 * (x - mean) + k2 per (g, c)
    if B == 1:
        x3 = x.reshape(G, A, C)
        dy3 = dy.reshape(G, A, C)
        dx3 = dx.reshape(G, A, C)
        for g in range(G):
            m = mean[g]
            k0 = coef[0, g]
            k1 = coef[1, g]
            k2 = coef[2, g]
            for a in range(A):
                xr = x3[g, a]
                dr = dy3[g, a]
                out = dx3[g, a]
                for c in range(C):
                    out[c] = k0[c] * dr[c] + k1[c] * (xr[c] - m[c]) + k2[c]
        return
    for g in range(G):
        for a in range(A):
            for c in range(C):
                m = mean[g, c]
                k0 = coef[0, g, c]
                k1 = coef[1, g, c]
                k2 = coef[2, g, c]
                xr = x[g, a, c]
                dr = dy[g, a, c]
                out = dx[g, a, c]
                for b in range(B):
                    out[b] = k0 * dr[b] + k1 * (xr[b] - m) + k2


def _spatial_bn_reference_stats(X, order):
    axis = 1 if order == "NCHW" else X.ndim - 1
    reduce = tuple(i for i in range(X.ndim) if i != axis)
    return axis, reduce


@register_op
class SpatialBN(Operator):
    """Y = (X - mean_c) / sqrt(var_c + epsilon) * scale_c + bias_c per channel c.

    Training (``is_test=0``, 5 outputs Y, running_mean, running_var, saved_mean,
    saved_inv_var): mean_c and var_c are the batch statistics over every axis but the channel
    axis (var is the *biased* estimate, divided by N*H*W); the running statistics (outputs 1 and
    2, which must be the same blobs as inputs 3 and 4) become ``running * momentum + batch *
    (1 - momentum)`` -- Caffe2's CPU op blends the biased batch variance into running_var too
    (checked in caffe2/operators/spatial_batch_norm_op.h, ComputeRunningMomentsAndFusedParam;
    cuDNN's engine used the unbiased one); saved_mean = batch mean and saved_inv_var =
    1 / sqrt(batch var + epsilon) (an inverse standard deviation despite the name) feed
    SpatialBNGradient.  An empty batch leaves the running statistics unchanged and zeroes the
    saved ones.

    Inference (``is_test=1``, 1 output): mean_c and var_c are inputs 3 and 4 (a variance,
    not an inverse).

    Inputs X (N, C, *spatial) for ``order='NCHW'`` or (N, *spatial, C) for ``'NHWC'`` (at least
    2-D; Caffe2 needed 3-D), scale, bias, mean, var (C values each).  Y may alias X.
    Arguments: ``epsilon`` 1e-5 (> 0), ``momentum`` 0.9 (in [0, 1]), ``order`` 'NCHW',
    ``is_test`` 0, ``num_batches`` 1 (Caffe2's multi-batch mode with the optional sums/sumsq
    inputs is not supported: values above 1 raise).  Running statistics keep the shape and
    dtype of inputs 3/4 (updated in place).
    """

    inputs = ("X", "scale", "bias", "mean", "var")
    outputs = ("Y", "running_mean", "running_var", "saved_mean", "saved_inv_var")
    num_outputs = (1, 5)
    inplace = {0: 0}
    enforce_inplace = {3: 1, 4: 2}
    args = {
        "epsilon": Arg("float", 1e-5, "added to the variance"),
        "momentum": Arg("float", 0.9, "running = running * momentum + batch * (1 - momentum)"),
        "order": Arg("str", "NCHW", "NCHW or NHWC"),
        "is_test": Arg("bool", False, "inference mode: normalise with inputs 3/4"),
        "num_batches": Arg("int", 1, "only 1 is supported"),
    }
    cpu = Kernels(train=spatial_bn_train_cpu, test=spatial_bn_test_cpu)
    gradient = staticmethod(lambda op, g_output: spatial_bn_gradient(op, g_output))

    def setup(self):
        a = self.args
        check_order(a["order"])
        n_out = len(self.output_names)
        if a["is_test"] and n_out != 1:
            raise errors.SchemaError(f"{self.where()}: is_test=1 produces 1 output (Y), the OperatorDef names {n_out}")
        if not a["is_test"] and n_out != 5:
            raise errors.SchemaError(
                f"{self.where()}: training (is_test=0) produces 5 outputs (Y, running_mean, running_var,"
                f" saved_mean, saved_inv_var), the OperatorDef names {n_out}")
        if not a["epsilon"] > 0:
            raise errors.ArgumentError(f"{self.where()}: epsilon must be > 0, got {a['epsilon']}")
        if not 0.0 <= a["momentum"] <= 1.0:
            raise errors.ArgumentError(f"{self.where()}: momentum must be in [0, 1], got {a['momentum']}")
        if a["num_batches"] != 1:
            raise errors.ArgumentError(
                f"{self.where()}: num_batches={a['num_batches']} (statistics from the optional sums/sumsq"
                f" inputs over several batches) is not supported; use num_batches=1")

    @staticmethod
    def infer(args, shapes, dtypes):
        order = check_order(args["order"])
        x = tuple(shapes[0])
        if len(x) < 2:
            raise errors.ShapeError(f"X must be at least 2-D (N, C, ...), got {x}")
        check_floating(dtypes[0], "X")
        c = channels(x, order)
        check_per_channel(shapes, [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")], c, x, order)
        if args["is_test"]:
            return [x], [dtypes[0]]
        return ([x, tuple(shapes[3]), tuple(shapes[4]), (c,), (c,)],
                [dtypes[0], dtypes[3], dtypes[4], dtypes[0], dtypes[0]])

    @staticmethod
    def reference(X, scale, bias, mean, var, epsilon=1e-5, momentum=0.9, order="NCHW", is_test=False):
        axis, reduce = _spatial_bn_reference_stats(X, order)
        c = X.shape[axis]
        shape = _bcast_shape(X.ndim, axis, c)
        x = X.astype(np.float64)
        s = scale.reshape(shape).astype(np.float64)
        b = bias.reshape(shape).astype(np.float64)
        if is_test:
            m = mean.reshape(shape).astype(np.float64)
            v = var.reshape(shape).astype(np.float64)
            return (((x - m) / np.sqrt(v + epsilon) * s + b).astype(X.dtype),)
        if X.size == 0:
            return (X.copy(), mean.copy(), var.copy(), np.zeros(c, X.dtype), np.zeros(c, X.dtype))
        bm = x.mean(axis=reduce)
        bv = ((x - bm.reshape(shape)) ** 2).mean(axis=reduce)
        y = (x - bm.reshape(shape)) / np.sqrt(bv.reshape(shape) + epsilon) * s + b
        rm = mean.astype(np.float64) * momentum + bm.reshape(mean.shape) * (1 - momentum)
        rv = var.astype(np.float64) * momentum + bv.reshape(var.shape) * (1 - momentum)
        return (y.astype(X.dtype), rm.astype(mean.dtype), rv.astype(var.dtype), bm.astype(X.dtype),
                (1.0 / np.sqrt(bv + epsilon)).astype(X.dtype))

    def bind(self, inputs, outputs):
        x, scale, bias, mean, var = inputs
        a = self.args
        g, aa, c, b = norm_view(tuple(x.shape), a["order"], per_instance=False)
        x4 = x.reshape(g, aa, c, b)
        y4 = outputs[0].reshape(g, aa, c, b)
        stats = self.ctx.empty((2, 1, c), np.float64)
        alpha = self.ctx.empty((1, c), np.float64)
        eps = float(a["epsilon"])
        if a["is_test"]:
            if x.size == 0:
                return _noop
            return functools.partial(self.kernel.test, x4, scale.reshape(c), bias.reshape(c), mean.reshape(c),
                                     var.reshape(c), eps, stats, alpha, y4)
        if outputs[1] is not mean or outputs[2] is not var:  # infer gives inputs 3/4's shape and dtype
            raise errors.OperatorError(f"{self.where()}: running statistics could not be updated in place")
        return functools.partial(self.kernel.train, x4, scale.reshape(c), bias.reshape(c), mean.reshape(c),
                                 var.reshape(c), float(a["momentum"]), eps, outputs[3], outputs[4], stats, alpha,
                                 y4)


def spatial_bn_gradient(op, g_output):
    """Caffe2's maker: SpatialBNGradient(X, scale, dY, saved_mean, saved_inv_var) in training,
    (X, scale, dY, mean, var) with is_test=1 -> (dX, dscale, dbias)."""
    args = schema.parse_args(SpatialBN.declared_args, op, "SpatialBN", True)
    ctx = GradientContext(op, g_output)
    stats = [I(3), I(4)] if args["is_test"] else [O(3), O(4)]
    ctx.add("SpatialBNGradient", [I(0), I(1), GO(0)] + stats, [GI(0), GI(1), GI(2)])
    return ctx.result()


@register_op
class SpatialBNGradient(Operator):
    """dX, dscale, dbias of SpatialBN: dbias = sum dY, dscale = sum dY * xhat and, in training,
    dX = scale * rstd * (dY - mean(dY) - xhat * mean(dY * xhat)) with xhat = (X - mean) * rstd
    (sums and means per channel over N and space).

    Inputs X, scale, dY, mean, rstd: in training (``is_test=0``) the forward's saved_mean and
    saved_inv_var.  With ``is_test=1`` Caffe2's maker passes the estimated mean and *variance*
    (inputs 3/4 of the forward); nbcaffe then treats them as constants, rstd = 1/sqrt(var +
    epsilon) and dX = scale * rstd * dY -- the gradient of the inference formula.  (Caffe2's
    CPU op computed the training formula with the variance read as rstd.)  Arguments as
    SpatialBN.
    """

    inputs = ("X", "scale", "dY", "saved_mean", "saved_inv_var")
    outputs = ("dX", "dscale", "dbias")
    args = dict(SpatialBN.args)
    gradient = None
    cpu = staticmethod(norm_grad_cpu)

    def setup(self):
        check_order(self.args["order"])

    @staticmethod
    def infer(args, shapes, dtypes):
        order = check_order(args["order"])
        x, dy = tuple(shapes[0]), tuple(shapes[2])
        if len(x) < 2:
            raise errors.ShapeError(f"X must be at least 2-D (N, C, ...), got {x}")
        if dy != x:
            raise errors.ShapeError(f"dY {dy} must have X's shape {x}")
        check_floating(dtypes[0], "X")
        c = channels(x, order)
        check_per_channel(shapes, [(1, "scale"), (3, "saved_mean"), (4, "saved_inv_var")], c, x, order)
        return [x, tuple(shapes[1]), tuple(shapes[1])], [dtypes[0], dtypes[1], dtypes[1]]

    @staticmethod
    def reference(X, scale, dY, saved_mean, saved_inv_var, epsilon=1e-5, order="NCHW", is_test=False):
        axis, reduce = _spatial_bn_reference_stats(X, order)
        shape = _bcast_shape(X.ndim, axis, X.shape[axis])
        x, g = X.astype(np.float64), dY.astype(np.float64)
        m = saved_mean.reshape(shape).astype(np.float64)
        if is_test:
            r = 1.0 / np.sqrt(saved_inv_var.reshape(shape).astype(np.float64) + epsilon)
        else:
            r = saved_inv_var.reshape(shape).astype(np.float64)
        s = scale.reshape(shape).astype(np.float64)
        xhat = (x - m) * r
        dbias = g.sum(axis=reduce)
        dscale = (g * xhat).sum(axis=reduce)
        if is_test:
            dx = g * s * r
        else:
            count = max(X.size // max(X.shape[axis], 1), 1)
            dx = s * r * (g - dbias.reshape(shape) / count - xhat * dscale.reshape(shape) / count)
        return (dx.astype(X.dtype), dscale.reshape(scale.shape).astype(scale.dtype),
                dbias.reshape(scale.shape).astype(scale.dtype))

    def bind(self, inputs, outputs):
        x, scale, dy, mean, second = inputs
        a = self.args
        g, aa, c, b = norm_view(tuple(x.shape), a["order"], per_instance=False)
        return functools.partial(
            self.kernel, x.reshape(g, aa, c, b), dy.reshape(g, aa, c, b), scale.reshape(c), mean.reshape(1, c),
            second.reshape(1, c), float(a["epsilon"]), bool(a["is_test"]), self.ctx.empty((2, 1, c), np.float64),
            self.ctx.empty((4, 1, c), np.float64), outputs[0].reshape(g, aa, c, b), outputs[1].reshape(c),
            outputs[2].reshape(c))


# ------------------------------------------------------------------------ InstanceNorm


@numba.njit(cache=True, error_model="numpy")
def instance_norm_cpu(x, scale, bias, eps, saved_mean, saved_rstd, stats, alpha, y):
    """InstanceNorm on x (N, A, C, B): per (n, c) moments into stats (2, N, C) float64,
    saved_mean / saved_rstd (N, C), y = (x - mean) * rstd * scale[c] + bias[c] (alpha (N, C)
    float64 scratch).  y may alias x."""
    _moments(x, stats)
    for g in range(x.shape[0]):
        for c in range(x.shape[2]):
            r = 1.0 / math.sqrt(stats[1, g, c] + eps)
            saved_mean[g, c] = stats[0, g, c]
            saved_rstd[g, c] = r
            alpha[g, c] = scale[c] * r
    _affine(x, stats[0], alpha, bias, y)


@numba.njit(cache=True, error_model="numpy")
def instance_stats_cpu(x, eps, mean, rstd, stats):
    """mean, rstd (N, C) of x (N, A, C, B) over (A, B): rstd = 1 / sqrt(var + eps)."""
    _moments(x, stats)
    for g in range(x.shape[0]):
        for c in range(x.shape[2]):
            mean[g, c] = stats[0, g, c]
            rstd[g, c] = 1.0 / math.sqrt(stats[1, g, c] + eps)


def _instance_reference_stats(X, order):
    axes = tuple(range(2, X.ndim)) if order == "NCHW" else tuple(range(1, X.ndim - 1))
    return axes


@register_op
class InstanceNorm(Operator):
    """Y = (X - mean_nc) / sqrt(var_nc + epsilon) * scale_c + bias_c, statistics per sample n and
    channel c over the spatial axes (biased variance).

    Inputs input (N, C, *spatial) for ``order='NCHW'`` or (N, *spatial, C) for ``'NHWC'`` (at
    least 3-D), scale, bias (C values each).  Outputs output (input's shape) and optionally
    saved_mean and saved_inv_stdev, both (N, C) (= 1 / sqrt(var + epsilon)), which
    InstanceNormGradient reuses.  The output may alias the input (both orders; Caffe2 refused
    NHWC in place).  Arguments: ``epsilon`` 1e-5 (>= 0), ``order`` 'NCHW'.
    """

    inputs = ("input", "scale", "bias")
    outputs = ("output", "saved_mean", "saved_inv_stdev")
    num_outputs = (1, 3)
    inplace = {0: 0}
    args = {"epsilon": Arg("float", 1e-5, "added to the variance"), "order": Arg("str", "NCHW", "NCHW or NHWC")}
    cpu = staticmethod(instance_norm_cpu)
    gradient = staticmethod(lambda op, g_output: instance_norm_gradient(op, g_output))

    def setup(self):
        check_order(self.args["order"])
        if not self.args["epsilon"] >= 0:
            raise errors.ArgumentError(f"{self.where()}: epsilon must be >= 0, got {self.args['epsilon']}")

    @staticmethod
    def infer(args, shapes, dtypes):
        order = check_order(args["order"])
        x = tuple(shapes[0])
        if len(x) < 3:
            raise errors.ShapeError(f"input must be at least 3-D (N, C, spatial...), got {x}")
        check_floating(dtypes[0], "input")
        c = channels(x, order)
        check_per_channel(shapes, [(1, "scale"), (2, "bias")], c, x, order)
        return [x, (x[0], c), (x[0], c)], [dtypes[0]] * 3

    @staticmethod
    def reference(input, scale, bias, epsilon=1e-5, order="NCHW"):
        axes = _instance_reference_stats(input, order)
        x = input.astype(np.float64)
        m = x.mean(axis=axes, keepdims=True)
        v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
        axis = 1 if order == "NCHW" else input.ndim - 1
        shape = _bcast_shape(input.ndim, axis, input.shape[axis])
        y = (x - m) / np.sqrt(v + epsilon) * scale.reshape(shape) + bias.reshape(shape)
        n, c = input.shape[0], input.shape[axis]
        inv = 1.0 / np.sqrt(v + epsilon)
        return y.astype(input.dtype), m.reshape(n, c).astype(input.dtype), inv.reshape(n, c).astype(input.dtype)

    def bind(self, inputs, outputs):
        x, scale, bias = inputs
        g, aa, c, b = norm_view(tuple(x.shape), self.args["order"], per_instance=True)
        ctx = self.ctx
        mean = outputs[1] if len(outputs) > 1 else ctx.empty((g, c), x.dtype)
        rstd = outputs[2] if len(outputs) > 2 else ctx.empty((g, c), x.dtype)
        if g * c == 0:
            return _noop
        return functools.partial(self.kernel, x.reshape(g, aa, c, b), scale.reshape(c), bias.reshape(c),
                                 float(self.args["epsilon"]), mean, rstd, ctx.empty((2, g, c), np.float64),
                                 ctx.empty((g, c), np.float64), outputs[0].reshape(g, aa, c, b))


def instance_norm_gradient(op, g_output):
    """Caffe2's maker: InstanceNormGradient(input, scale, bias, dY[, saved_mean[, saved_inv_stdev]])."""
    ctx = GradientContext(op, g_output)
    inputs = [I(0), I(1), I(2), GO(0)] + [O(j) for j in range(1, len(op.output))]
    ctx.add("InstanceNormGradient", inputs, [GI(0), GI(1), GI(2)])
    return ctx.result()


@register_op
class InstanceNormGradient(Operator):
    """dX = scale * rstd * (dY - mean(dY) - xhat * mean(dY * xhat)), dscale = sum dY * xhat,
    dbias = sum dY, with xhat = (X - mean) * rstd per sample and channel (means over space, sums
    over samples and space).

    Inputs input, scale, bias, output_grad and optionally saved_mean and saved_inv_stdev; with
    fewer than 6 inputs mean and rstd are recomputed from the input (Caffe2 reused a given
    saved_mean; it is the same value).  Arguments as InstanceNorm.
    """

    inputs = ("input", "scale", "bias", "output_grad", "saved_mean", "saved_inv_stdev")
    outputs = ("input_grad", "scale_grad", "bias_grad")
    num_inputs = (4, 6)
    args = dict(InstanceNorm.args)
    gradient = None
    cpu = Kernels(stats=instance_stats_cpu, grad=norm_grad_cpu)

    def setup(self):
        check_order(self.args["order"])

    @staticmethod
    def infer(args, shapes, dtypes):
        order = check_order(args["order"])
        x, dy = tuple(shapes[0]), tuple(shapes[3])
        if len(x) < 3:
            raise errors.ShapeError(f"input must be at least 3-D (N, C, spatial...), got {x}")
        if dy != x:
            raise errors.ShapeError(f"output_grad {dy} must have the input's shape {x}")
        check_floating(dtypes[0], "input")
        c = channels(x, order)
        check_per_channel(shapes, [(1, "scale"), (2, "bias")], c, x, order)
        for i in range(4, len(shapes)):
            if schema.prod(shapes[i]) != x[0] * c:
                raise errors.ShapeError(
                    f"{InstanceNormGradient.inputs[i]} {tuple(shapes[i])} must hold N*C={x[0] * c} values")
        return [x, tuple(shapes[1]), tuple(shapes[2])], [dtypes[0], dtypes[1], dtypes[2]]

    @staticmethod
    def reference(input, scale, bias, output_grad, saved_mean=None, saved_inv_stdev=None, epsilon=1e-5,
                  order="NCHW"):
        axes = _instance_reference_stats(input, order)
        axis = 1 if order == "NCHW" else input.ndim - 1
        shape = _bcast_shape(input.ndim, axis, input.shape[axis])
        x, g = input.astype(np.float64), output_grad.astype(np.float64)
        m = x.mean(axis=axes, keepdims=True)
        r = 1.0 / np.sqrt(((x - m) ** 2).mean(axis=axes, keepdims=True) + epsilon)
        if saved_inv_stdev is not None:
            stat_shape = m.shape
            m = saved_mean.reshape(stat_shape).astype(np.float64)
            r = saved_inv_stdev.reshape(stat_shape).astype(np.float64)
        xhat = (x - m) * r
        s = scale.reshape(shape).astype(np.float64)
        dx = s * r * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
        others = tuple(i for i in range(input.ndim) if i != axis)
        return (dx.astype(input.dtype), (g * xhat).sum(axis=others).reshape(scale.shape).astype(scale.dtype),
                g.sum(axis=others).reshape(bias.shape).astype(bias.dtype))

    def bind(self, inputs, outputs):
        x, scale, dy = inputs[0], inputs[1], inputs[3]
        g, aa, c, b = norm_view(tuple(x.shape), self.args["order"], per_instance=True)
        ctx = self.ctx
        eps = float(self.args["epsilon"])
        if g * c == 0:
            return _noop
        x4 = x.reshape(g, aa, c, b)
        if len(inputs) == 6:
            mean, rstd = inputs[4].reshape(g, c), inputs[5].reshape(g, c)
        else:
            mean, rstd = ctx.empty((g, c), np.float64), ctx.empty((g, c), np.float64)
        grad = functools.partial(
            self.kernel.grad, x4, dy.reshape(g, aa, c, b), scale.reshape(c), mean, rstd, eps, False,
            ctx.empty((2, g, c), np.float64), ctx.empty((4, g, c), np.float64), outputs[0].reshape(g, aa, c, b),
            outputs[1].reshape(c), outputs[2].reshape(c))
        if len(inputs) == 6:
            return grad
        stats = functools.partial(self.kernel.stats, x4, eps, mean, rstd, ctx.empty((2, g, c), np.float64))

        def call():
            stats()
            grad()

        return call


# ------------------------------------------------------------------------ LayerNorm


@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def layer_norm_cpu(x, gamma, beta, affine, eps, mean, std, y):
    """Row-wise layer norm of x (M, N): mean[i], std[i] = sqrt(var + eps) (biased var, two
    passes in float64), y = (x - mean) / std, then * gamma[j] + beta[j] when ``affine``."""
    m_rows, n = x.shape
    inv_n = 1.0 / n if n > 0 else 0.0
    for i in range(m_rows):
        s = 0.0
        for j in range(n):
            s += x[i, j]
        mu = s * inv_n
        s = 0.0
        for j in range(n):
            d = x[i, j] - mu
            s += d * d
        sigma = math.sqrt(s * inv_n + eps)
        mean[i] = mu
        std[i] = sigma
        r = 1.0 / sigma
        if affine:
            for j in range(n):
                y[i, j] = (x[i, j] - mu) * r * gamma[j] + beta[j]
        else:
            for j in range(n):
                y[i, j] = (x[i, j] - mu) * r


@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def layer_norm_grad_cpu(dy, x, mean, std, gamma, affine, acc, dx, dgamma, dbeta):
    """dX = r * (g - mean(g) - xhat * mean(g * xhat)) per row of (M, N) arrays, with r = 1/std,
    xhat = (x - mean) * r and g = dy * gamma (dy without ``affine``); with ``affine`` also
    dgamma = sum over rows of dy * xhat and dbeta = sum of dy (acc: (2, N) float64 scratch)."""
    m_rows, n = x.shape
    inv_n = 1.0 / n if n > 0 else 0.0
    if affine:
        for j in range(n):
            acc[0, j] = 0.0
            acc[1, j] = 0.0
    for i in range(m_rows):
        mu = mean[i]
        r = 1.0 / std[i]
        s1 = 0.0
        s2 = 0.0
        for j in range(n):
            g = dy[i, j] * gamma[j] if affine else dy[i, j] * 1.0
            s1 += g
            s2 += g * (x[i, j] - mu)
        s1 *= inv_n
        s2 *= inv_n * r
        for j in range(n):
            xhat = (x[i, j] - mu) * r
            g = dy[i, j] * gamma[j] if affine else dy[i, j] * 1.0
            dx[i, j] = r * (g - s1 - xhat * s2)
        if affine:
            for j in range(n):
                acc[0, j] += dy[i, j] * (x[i, j] - mu) * r
                acc[1, j] += dy[i, j]
    if affine:
        for j in range(n):
            dgamma[j] = acc[0, j]
            dbeta[j] = acc[1, j]


def layer_norm_dims(shape, axis):
    """(M, N, canonical axis): rows before ``axis``, features from it."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise errors.ShapeError(f"LayerNorm needs an input of at least 2 dims, got {shape}")
    axis = schema.canonical_axis(axis, len(shape))
    m, n = schema.flatten_2d(shape, axis)
    return m, n, axis


@register_op
class LayerNorm(Operator):
    """Y = (X - mean) / std with mean, std = sqrt(var + epsilon) over the dims from ``axis`` on
    (biased variance), then Y * gamma + beta when ``elementwise_affine=1``.

    Inputs input (at least 2-D) and, only with ``elementwise_affine=1``, gamma and beta holding
    prod(input.shape[axis:]) values each.  Outputs output (input's shape), mean and stddev of
    shape input.shape[:axis] + (1,).  Arguments: ``axis`` 1 (negative counts from the end),
    ``epsilon`` 1e-5, ``elementwise_affine`` 0.  Giving gamma/beta without
    elementwise_affine=1 is an error (Caffe2 ignored them).
    """

    inputs = ("input", "gamma", "beta")
    outputs = ("output", "mean", "stddev")
    num_inputs = (1, 3)
    args = {"axis": 1, "epsilon": Arg("float", 1e-5, "added to the variance"),
            "elementwise_affine": Arg("bool", False, "inputs 1, 2 are gamma and beta")}
    cpu = staticmethod(layer_norm_cpu)
    gradient = staticmethod(lambda op, g_output: layer_norm_gradient(op, g_output))

    def setup(self):
        n_in = len(self.input_names)
        if self.args["elementwise_affine"] and n_in != 3:
            raise errors.SchemaError(f"{self.where()}: elementwise_affine=1 needs 3 inputs (input, gamma, beta),"
                                     f" got {n_in}")
        if not self.args["elementwise_affine"] and n_in != 1:
            raise errors.SchemaError(f"{self.where()}: gamma and beta are only read with elementwise_affine=1"
                                     f" (Caffe2 silently ignored them); got {n_in} inputs")

    @staticmethod
    def infer(args, shapes, dtypes):
        x = tuple(shapes[0])
        m, n, axis = layer_norm_dims(x, args["axis"])
        check_floating(dtypes[0], "input")
        if len(shapes) == 3:
            for i, name in ((1, "gamma"), (2, "beta")):
                if schema.prod(shapes[i]) != n:
                    raise errors.ShapeError(
                        f"{name} {tuple(shapes[i])} must hold {n} values (input {x} from axis {axis} on)")
        stat = x[:axis] + (1,)
        return [x, stat, stat], [dtypes[0]] * 3

    @staticmethod
    def reference(input, gamma=None, beta=None, axis=1, epsilon=1e-5, elementwise_affine=False):
        axis = axis + input.ndim if axis < 0 else axis
        axes = tuple(range(axis, input.ndim))
        x = input.astype(np.float64)
        m = x.mean(axis=axes, keepdims=True)
        sd = np.sqrt(((x - m) ** 2).mean(axis=axes, keepdims=True) + epsilon)
        y = (x - m) / sd
        if elementwise_affine:
            y = y * gamma.reshape(input.shape[axis:]) + beta.reshape(input.shape[axis:])
        stat = input.shape[:axis] + (1,)
        return y.astype(input.dtype), m.reshape(stat).astype(input.dtype), sd.reshape(stat).astype(input.dtype)

    def bind(self, inputs, outputs):
        x = inputs[0]
        m, n, _axis = layer_norm_dims(tuple(x.shape), self.args["axis"])
        affine = bool(self.args["elementwise_affine"])
        if affine:
            gamma, beta = inputs[1].reshape(n), inputs[2].reshape(n)
        else:
            gamma = beta = self.ctx.zeros((1,), x.dtype)
        if m * n == 0:
            return _noop
        return functools.partial(self.kernel, x.reshape(m, n), gamma, beta, affine, float(self.args["epsilon"]),
                                 outputs[1].reshape(m), outputs[2].reshape(m), outputs[0].reshape(m, n))


def layer_norm_gradient(op, g_output):
    """Caffe2's maker: LayerNormGradient(dY, Y, mean, stddev, X[, gamma]) -> dX[, dgamma, dbeta]."""
    args = schema.parse_args(LayerNorm.declared_args, op, "LayerNorm", True)
    ctx = GradientContext(op, g_output)
    if args["elementwise_affine"]:
        ctx.add("LayerNormGradient", [GO(0), O(0), O(1), O(2), I(0), I(1)], [GI(0), GI(1), GI(2)])
    else:
        ctx.add("LayerNormGradient", [GO(0), O(0), O(1), O(2), I(0)], [GI(0)])
    return ctx.result()


@register_op
class LayerNormGradient(Operator):
    """dX = r * (g - mean(g) - xhat * mean(g * xhat)) over each row's features, r = 1/stddev,
    xhat = (X - mean) * r, g = dY * gamma (dY without elementwise_affine); with
    ``elementwise_affine=1`` also dgamma = sum over rows of dY * xhat and dbeta = sum of dY.

    Inputs dY, Y (unused, Caffe2's signature), mean, stddev, X[, gamma]; outputs dX[, dgamma,
    dbeta].  Arguments as LayerNorm.
    """

    inputs = ("dY", "Y", "mean", "stddev", "X", "gamma")
    outputs = ("dX", "dgamma", "dbeta")
    num_inputs = (5, 6)
    num_outputs = (1, 3)
    args = dict(LayerNorm.args)
    gradient = None
    cpu = staticmethod(layer_norm_grad_cpu)

    def setup(self):
        affine = self.args["elementwise_affine"]
        n_in, n_out = len(self.input_names), len(self.output_names)
        if affine and (n_in != 6 or n_out != 3):
            raise errors.SchemaError(f"{self.where()}: elementwise_affine=1 takes 6 inputs and gives 3 outputs,"
                                     f" got {n_in} and {n_out}")
        if not affine and (n_in != 5 or n_out != 1):
            raise errors.SchemaError(f"{self.where()}: without elementwise_affine it takes 5 inputs and gives 1"
                                     f" output, got {n_in} and {n_out}")

    @staticmethod
    def infer(args, shapes, dtypes):
        x, dy = tuple(shapes[4]), tuple(shapes[0])
        m, n, _axis = layer_norm_dims(x, args["axis"])
        if dy != x:
            raise errors.ShapeError(f"dY {dy} must have X's shape {x}")
        check_floating(dtypes[4], "X")
        for i, name in ((2, "mean"), (3, "stddev")):
            if schema.prod(shapes[i]) != m:
                raise errors.ShapeError(f"{name} {tuple(shapes[i])} must hold one value per row ({m} rows of X {x})")
        if len(shapes) == 6:
            if schema.prod(shapes[5]) != n:
                raise errors.ShapeError(f"gamma {tuple(shapes[5])} must hold {n} values")
            return [x, tuple(shapes[5]), tuple(shapes[5])], [dtypes[4], dtypes[5], dtypes[5]]
        return [x], [dtypes[4]]

    @staticmethod
    def reference(dY, Y, mean, stddev, X, gamma=None, axis=1, elementwise_affine=False):
        axis = axis + X.ndim if axis < 0 else axis
        m_rows, n = schema.flatten_2d(X.shape, axis)
        x = X.reshape(m_rows, n).astype(np.float64)
        dy = dY.reshape(m_rows, n).astype(np.float64)
        mu = mean.reshape(m_rows, 1).astype(np.float64)
        r = 1.0 / stddev.reshape(m_rows, 1).astype(np.float64)
        xhat = (x - mu) * r
        g = dy * gamma.reshape(1, n) if elementwise_affine else dy
        dx = r * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
        dx = dx.reshape(X.shape).astype(X.dtype)
        if not elementwise_affine:
            return (dx,)
        return (dx, (dy * xhat).sum(axis=0).reshape(gamma.shape).astype(gamma.dtype),
                dy.sum(axis=0).reshape(gamma.shape).astype(gamma.dtype))

    def bind(self, inputs, outputs):
        dy, _y, mean, std, x = inputs[:5]
        m, n, _axis = layer_norm_dims(tuple(x.shape), self.args["axis"])
        affine = bool(self.args["elementwise_affine"])
        if affine:
            gamma, dgamma, dbeta = inputs[5].reshape(n), outputs[1].reshape(n), outputs[2].reshape(n)
        else:
            gamma = dgamma = dbeta = self.ctx.zeros((1,), x.dtype)
        if n == 0:
            return _noop
        # m == 0 still runs the kernel: it writes zero dgamma/dbeta
        return functools.partial(self.kernel, dy.reshape(m, n), x.reshape(m, n), mean.reshape(m), std.reshape(m),
                                 gamma, affine, self.ctx.empty((2, n), np.float64), outputs[0].reshape(m, n),
                                 dgamma, dbeta)


# ------------------------------------------------------------------------ LRN


@numba.njit(cache=True, error_model="numpy")
def _mul_neg_pow(a, s, beta, out):
    """out = a * s**-beta over flat arrays; beta 0.75, 0.5 and 1 use square roots / division,
    which vectorize (a pow call per element is ~20x slower).  The numpy error model matters:
    Python's raises on division by zero and that check stops LLVM from vectorizing."""
    if beta == 0.75:
        for i in range(a.size):
            t = math.sqrt(s[i])
            out[i] = a[i] / (t * math.sqrt(t))
    elif beta == 0.5:
        for i in range(a.size):
            out[i] = a[i] / math.sqrt(s[i])
    elif beta == 1.0:
        for i in range(a.size):
            out[i] = a[i] / s[i]
    else:
        for i in range(a.size):
            out[i] = a[i] * s[i] ** -beta


def _neg_pow(s, beta):
    """s ** -beta (scalar; the CUDA kernels compile it as a device function)."""
    if beta == 0.75:
        t = math.sqrt(s)
        return 1.0 / (t * math.sqrt(t))
    if beta == 0.5:
        return 1.0 / math.sqrt(s)
    if beta == 1.0:
        return 1.0 / s
    return s ** -beta


@numba.njit(cache=True, error_model="numpy")
def _lrn_scale(x, size, pre, alpha_over_size, bias, scale):
    """scale[a, c, b] = bias + alpha_over_size * sum of x[a, c', b]**2 over the channel window
    c' in [c - pre, c - pre + size - 1] (clipped to [0, C)), for x, scale (A, C, B)."""
    A, C, B = x.shape
    for a in range(A):
        for c in range(C):
            lo = max(0, c - pre)
            hi = min(C, c - pre + size)
            for b in range(B):
                scale[a, c, b] = 0.0
            for cc in range(lo, hi):
                for b in range(B):
                    v = x[a, cc, b]
                    scale[a, c, b] += v * v
            for b in range(B):
                scale[a, c, b] = bias + alpha_over_size * scale[a, c, b]


@numba.njit(cache=True, error_model="numpy")
def lrn_cpu(x, size, pre, alpha_over_size, beta, bias, scale, y):
    """Y = X * scale**-beta with scale = bias + alpha/size * (window sum of X²) over channels;
    x, scale, y are C-contiguous (A, C, B) views (channel axis 1)."""
    _lrn_scale(x, size, pre, alpha_over_size, bias, scale)
    _mul_neg_pow(x.reshape(x.size), scale.reshape(scale.size), beta, y.reshape(y.size))


@numba.njit(cache=True, error_model="numpy")
def lrn_grad_cpu(x, y, scale, dy, recompute, size, pre, alpha_over_size, beta, bias, ratio, dx):
    """dX = dY * scale**-beta - 2 * alpha/size * beta * X * sum of dY * Y / scale over the
    channels whose window contains this one; ``recompute``: scale is scratch, filled from X
    first.  All arrays (A, C, B), C-contiguous; ratio is scratch."""
    if recompute:
        _lrn_scale(x, size, pre, alpha_over_size, bias, scale)
    A, C, B = x.shape
    n = x.size
    flat_ratio = ratio.reshape(n)
    flat_dy = dy.reshape(n)
    flat_y = y.reshape(n)
    flat_scale = scale.reshape(n)
    for i in range(n):
        flat_ratio[i] = flat_dy[i] * flat_y[i] / flat_scale[i]
    _mul_neg_pow(flat_dy, flat_scale, beta, dx.reshape(n))  # the first term of dX
    post = size - 1 - pre
    coef = 2.0 * alpha_over_size * beta
    for a in range(A):
        for c in range(C):
            lo = max(0, c - post)
            hi = min(C, c + pre + 1)
            dxr = dx[a, c]
            xr = x[a, c]
            for cc in range(lo, hi):
                rr = ratio[a, cc]
                for b in range(B):
                    dxr[b] -= coef * xr[b] * rr[b]


def lrn_view(shape, order):
    """(A, C, B): NCHW (N, C, spatial), NHWC (N * spatial, C, 1)."""
    shape = tuple(int(d) for d in shape)
    c = channels(shape, order)
    if order == "NCHW":
        return shape[0], c, schema.prod(shape[2:])
    return schema.prod(shape[:-1]), c, 1


def lrn_reference_scale(x, size, alpha, bias, order):
    """float64 scale of LRN by explicit shifted sums (NumPy, channel axis moved to the end)."""
    axis = 1 if order == "NCHW" else x.ndim - 1
    sq = np.moveaxis(x.astype(np.float64), axis, -1) ** 2
    c = sq.shape[-1]
    pre = (size - 1) // 2
    total = np.zeros_like(sq)
    for offset in range(-pre, size - pre):  # window [c - pre, c - pre + size - 1]
        lo, hi = max(0, -offset), min(c, c - offset)
        total[..., lo:hi] += sq[..., lo + offset:hi + offset]
    return np.moveaxis(bias + alpha / size * total, -1, axis)


@register_op
class LRN(Operator):
    """Y = X * (bias + alpha / size * sum_{c' in window(c)} X_c'²) ** -beta, across channels.

    window(c) = [c - (size-1)//2, c - (size-1)//2 + size - 1] clipped to the channels.  alpha
    *is* divided by size (Caffe2's CPU/CUDA kernels, as in Caffe's ACROSS_CHANNELS;
    torch.nn.functional.local_response_norm does the same, with k = bias); ``bias`` is Caffe's
    k.  Input X (N, C, *spatial) for ``order='NCHW'`` or (N, *spatial, C) for ``'NHWC'`` (at
    least 2-D).  Outputs Y and optionally scale (the base of the power, X's shape), which
    LRNGradient reuses.  Arguments: ``size`` (required, >= 1; odd in practice), ``alpha`` 0,
    ``beta`` 0, ``bias`` 1.0, ``order`` 'NCHW'.
    """

    inputs, outputs = ("X",), ("Y", "scale")
    num_outputs = (1, 2)
    args = {"size": Arg("int", 0, "channels in the window", required=True),
            "alpha": Arg("float", 0.0, "scaling of the window sum (divided by size)"),
            "beta": Arg("float", 0.0, "exponent"), "bias": Arg("float", 1.0, "additive term (Caffe's k)"),
            "order": Arg("str", "NCHW", "NCHW or NHWC")}
    cpu = staticmethod(lrn_cpu)
    gradient = staticmethod(lambda op, g_output: lrn_gradient(op, g_output))

    def setup(self):
        check_order(self.args["order"])
        if self.args["size"] < 1:
            raise errors.ArgumentError(f"{self.where()}: size must be >= 1, got {self.args['size']}")

    @staticmethod
    def infer(args, shapes, dtypes):
        check_order(args["order"])
        x = tuple(shapes[0])
        if len(x) < 2:
            raise errors.ShapeError(f"X must be at least 2-D (N, C, ...), got {x}")
        check_floating(dtypes[0], "X")
        return [x, x], [dtypes[0], dtypes[0]]

    @staticmethod
    def reference(X, size=1, alpha=0.0, beta=0.0, bias=1.0, order="NCHW"):
        scale = lrn_reference_scale(X, size, alpha, bias, order)
        return (X * scale ** -beta).astype(X.dtype), scale.astype(X.dtype)

    def lrn_params(self):
        a = self.args
        size = int(a["size"])
        return size, (size - 1) // 2, float(a["alpha"]) / size, float(a["beta"]), float(a["bias"])

    def bind(self, inputs, outputs):
        x = inputs[0]
        view = lrn_view(tuple(x.shape), self.args["order"])
        scale = outputs[1] if len(outputs) > 1 else self.ctx.empty(tuple(x.shape), x.dtype)
        if x.size == 0:
            return _noop
        return functools.partial(self.kernel, x.reshape(view), *self.lrn_params(), scale.reshape(view),
                                 outputs[0].reshape(view))


def lrn_gradient(op, g_output):
    """LRNGradient(X, Y, scale, dY) when the forward produced scale, else Caffe2's (X, Y, dY)."""
    ctx = GradientContext(op, g_output)
    inputs = [I(0), O(0), O(1), GO(0)] if len(op.output) > 1 else [I(0), O(0), GO(0)]
    ctx.add("LRNGradient", inputs, [GI(0)])
    return ctx.result()


@register_op
class LRNGradient(Operator):
    """dX = dY * scale**-beta - 2 * alpha / size * beta * X * sum_{c: c' in window(c)} dY_c * Y_c / scale_c.

    Inputs X, Y, scale, dY, or Caffe2's three inputs X, Y, dY (scale is then recomputed from
    X).  Arguments as LRN.
    """

    inputs, outputs = ("X", "Y", "scale", "dY"), ("dX",)
    num_inputs = (3, 4)
    args = dict(LRN.args)
    gradient = None
    cpu = staticmethod(lrn_grad_cpu)
    setup = LRN.setup
    lrn_params = LRN.lrn_params

    @staticmethod
    def infer(args, shapes, dtypes):
        check_order(args["order"])
        x = tuple(shapes[0])
        names = ("X", "Y", "scale", "dY") if len(shapes) == 4 else ("X", "Y", "dY")
        for name, shape in zip(names, shapes):
            if tuple(shape) != x:
                raise errors.ShapeError(f"{name} {tuple(shape)} must have X's shape {x}")
        if len(x) < 2:
            raise errors.ShapeError(f"X must be at least 2-D (N, C, ...), got {x}")
        check_floating(dtypes[0], "X")
        return [x], [dtypes[0]]

    @staticmethod
    def reference(X, Y, *rest, size=1, alpha=0.0, beta=0.0, bias=1.0, order="NCHW"):
        dY = rest[-1]
        scale = lrn_reference_scale(X, size, alpha, bias, order)
        axis = 1 if order == "NCHW" else X.ndim - 1
        ratio = np.moveaxis(dY.astype(np.float64) * Y.astype(np.float64) / scale, axis, -1)
        c = ratio.shape[-1]
        pre = (size - 1) // 2
        back = np.zeros_like(ratio)
        for offset in range(-pre, size - pre):  # channel j collects from every c with j - c = offset
            lo, hi = max(0, offset), min(c, c + offset)
            back[..., lo:hi] += ratio[..., lo - offset:hi - offset]
        dx = dY * scale ** -beta - 2.0 * alpha / size * beta * X * np.moveaxis(back, -1, axis)
        return (dx.astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, y, dy = inputs[0], inputs[1], inputs[-1]
        view = lrn_view(tuple(x.shape), self.args["order"])
        recompute = len(inputs) == 3
        scale = self.ctx.empty(tuple(x.shape), x.dtype) if recompute else inputs[2]
        if x.size == 0:
            return _noop
        return functools.partial(self.kernel, x.reshape(view), y.reshape(view), scale.reshape(view),
                                 dy.reshape(view), recompute, *self.lrn_params(),
                                 self.ctx.empty(view, x.dtype), outputs[0].reshape(view))
