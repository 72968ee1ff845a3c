"""Normalization: InstanceNorm and LayerNorm (+ gradient ops).

InstanceNorm takes statistics per sample and channel over space, on the (G, A, C, B) view of
nbcaffe/ops/_norm_kernels.py: NCHW ``(N, 1, C, H*W)``, NHWC ``(N, H*W, C, 1)``; its kernels
(shared with SpatialBN, nbcaffe/ops/batch_norm.py) live there.  LayerNorm normalises the rows of
an (M, N) view (dims before ``axis`` by dims from it).  Statistics accumulate in float64 (two
passes: mean, then squared deviations); every kernel is dtype-generic (float32 in nets, float64
in the gradient checks); integer inputs are rejected by ``infer``.  LRN is in
nbcaffe/ops/lrn.py.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, I, O
from nbcaffe.operator import Operator
from nbcaffe.ops._norm_kernels import (
    Kernels,
    bcast_shape,
    channels,
    check_floating,
    check_order,
    check_per_channel,
    instance_norm_cpu,
    instance_stats_cpu,
    noop,
    norm_grad_cpu,
    norm_view,
)
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

# ------------------------------------------------------------------------ InstanceNorm


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
        shape = bcast_shape(input.ndim, axis, input.shape[axis])
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
            return noop
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
        shape = bcast_shape(input.ndim, axis, input.shape[axis])
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
            return noop
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
            return noop
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
            return noop
        # m == 0 still runs the kernel: it writes zero dgamma/dbeta
        return functools.partial(self.kernel, dy.reshape(m, n), x.reshape(m, n), mean.reshape(m), std.reshape(m),
                                 gamma, affine, self.ctx.empty((2, n), np.float64), outputs[0].reshape(m, n),
                                 dgamma, dbeta)
