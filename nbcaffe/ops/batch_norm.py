"""Batch normalization: SpatialBN and SpatialBNGradient.

Statistics per channel over the batch and space, taken on the (G, A, C, B) view of
nbcaffe/ops/_norm_kernels.py: NCHW ``(1, N, C, H*W)``, NHWC ``(1, N*H*W, C, 1)``.  The
kernels (moments, affine and the gradient kernel) are shared with InstanceNorm and live there.
"""

from __future__ import annotations

import functools

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
    noop,
    norm_grad_cpu,
    norm_view,
    spatial_bn_test_cpu,
    spatial_bn_train_cpu,
)
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


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
        shape = bcast_shape(X.ndim, axis, c)
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
                return noop
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
        shape = bcast_shape(X.ndim, axis, X.shape[axis])
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
