"""Convolution: Conv (Conv1D/2D/3D) and ConvGradient.

Layouts (Caffe2): NCHW X (N, C, *sp), filter (M, C/group, *kernel); NHWC X (N, *sp, C),
filter (M, *kernel, C/group); bias (M,).  1, 2 or 3 spatial dims.

ConvTranspose and its gradient are the conv_transpose family.  The CPU
strategies (1x1 GEMMs, row-shift GEMMs, chunked im2col) are in nbcaffe/ops/_conv_cpu.py with
the measurements behind them in docs/design.md, "Convolution"; geometry checks, the NumPy
references and the shared op base in nbcaffe/ops/_conv_common.py.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from nbcaffe import errors
from nbcaffe.devices import CPU
from nbcaffe.ops import _conv_pool as cp
from nbcaffe.ops._conv_bind import bind_forward
from nbcaffe.ops._conv_common import (
    WindowOp,
    check_bias,
    conv_gradient_maker,
    filter_back,
    filter_geometry,
    five,
    float_dtypes,
    from_ncdhw,
    grad_outputs,
    reference_conv,
    reference_conv_grads,
    w5,
)
from nbcaffe.ops._conv_cpu import (
    FORWARD_SERIAL_MACS,
    allocate,
    conv_backward_data,
    conv_backward_filter,
    conv_forward,
    data_grad_plan,
    filter_grad_plan,
    forward_plan,
    fused_backward,
)
from nbcaffe.ops.nonlinearity import PRelu, prelu_cpu, prelu_view
from nbcaffe.registry import register_op


def conv_cpu(x, w, b, y, plan, scratch):
    """Conv: y = conv(x, w) + b (5-D views; see conv_forward)."""
    conv_forward(x, w, b, y, plan, scratch)


@register_op(aliases=("Conv1D", "Conv2D", "Conv3D"))
class Conv(WindowOp):
    """Y[n, m, o] = bias[m] + Σ_{c, k} filter[m, c, k] · X[n, g·C/G + c, o·stride − pad_head + k·dilation]
    (g = the group of m; X is 0 outside the image; NCHW shown, NHWC keeps channels last).

    Inputs X (N, C, *sp) | (N, *sp, C), filter (M, C/G, *kernel) | (M, *kernel, C/G), optional
    bias (M,); 1-3 spatial dims (aliases Conv1D, Conv2D, Conv3D).  Arguments: kernel | kernel_h
    + kernel_w | kernels; stride | stride_h + stride_w | strides (1); pad | pad_t, pad_l, pad_b,
    pad_r | pads (0); dilation | dilation_h + dilation_w | dilations (1); group G (1); order
    ('NCHW'); legacy_pad (0 NOTSET, 1 VALID, 2 SAME, 3 CAFFE_LEGACY_POOLING);
    no_gradient_to_input (0).  Output size per dim: floor((in + pad_head + pad_tail −
    dilation·(k − 1) − 1) / stride) + 1.
    """

    inputs, outputs = ("X", "filter", "bias"), ("Y",)
    num_inputs = (2, 3)
    args = {**cp.window_args("conv"), "group": 1, "no_gradient_to_input": False}
    ignored_args = ("deterministic", "exhaustive_search")
    cpu = staticmethod(conv_cpu)
    gradient = staticmethod(conv_gradient_maker)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "Conv", "conv")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"])
        float_dtypes(["X", "filter", "bias"][:len(shapes)], dtypes)
        if len(shapes) > 2:
            check_bias(shapes[2], m)
        return [geo.shape(m, geo.out_sp)], [dtypes[0]]

    @staticmethod
    def reference(X, filter, bias=None, *, window, group=1, no_bias=False):  # noqa: A002 (Caffe2's name)
        geo, m = filter_geometry(window, X.shape, filter.shape, group)
        y = reference_conv(X, filter, bias, geo, group)
        return (from_ncdhw(y, geo.order, geo.rank).astype(X.dtype),)

    def forward_args(self, inputs, outputs, has_bias):
        """(x5, w5, bias, y5, plan, scratch): the forward kernels' arguments, built once at bind;
        the fused ops below take theirs from here too."""
        x, w = inputs[0], inputs[1]
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group)
        plan, shapes = forward_plan(geo, group, has_bias, m, np.dtype(x.dtype).itemsize,
                                    cpu=self.ctx.device_type == CPU, serial_macs=FORWARD_SERIAL_MACS)
        b = inputs[2] if has_bias else w.reshape(-1)
        return (five(x, geo.order, geo.rank), w5(w, geo.order, geo.rank), b, five(outputs[0], geo.order, geo.rank),
                plan, allocate(self.ctx, shapes, x.dtype))

    def bind(self, inputs, outputs):
        args = self.forward_args(inputs, outputs, len(inputs) > 2)
        if self.kernel in _CPU_FORWARD:  # the registered CPU kernel, with its views built once
            return bind_forward(*args, relu=_CPU_FORWARD[self.kernel])
        return functools.partial(self.kernel, *args)


def conv_relu_cpu(x, w, b, y, plan, scratch):
    """ConvRelu: y = max(conv(x, w) + b, 0), the ReLU in the pass that adds the bias."""
    conv_forward(x, w, b, y, plan, scratch, relu=True)


@register_op
class ConvRelu(Conv):
    """Y = max(Conv(X, filter, bias), 0): a convolution and a ReLU in one op (Caffe2's ConvRelu).

    Inputs, arguments and shapes as Conv.  Inference only (no gradient; Caffe2's op had none).
    ``nbcaffe.Predictor`` writes it into its private running net where a Conv's output feeds only
    a Relu (nbcaffe/predictor/optimize.py); on the CPU the ReLU rides the kernel's last pass over
    Y, so Y is written once.  CPU only.
    """

    op_type = "ConvRelu"
    devices = (CPU,)
    cpu = staticmethod(conv_relu_cpu)
    gradient = None

    @staticmethod
    def reference(X, filter, bias=None, *, window, group=1, no_bias=False):  # noqa: A002 (Caffe2's name)
        (y,) = Conv.reference(X, filter, bias, window=window, group=group)
        return (np.where(y > 0, y, 0).astype(y.dtype),)


def conv_sum_relu_cpu(x, w, b, s, y, plan, scratch):
    """ConvSumRelu: y = max(conv(x, w) + b + s, 0)."""
    conv_forward(x, w, b, y, plan, scratch, relu=True, res=s)


@register_op
class ConvSumRelu(Conv):
    """Y = max(Conv(X, filter, bias) + S, 0): a convolution, a residual Sum and a ReLU in one op
    (ResNet's block output; Caffe2's ideep engine had the same fusion as ConvFusion).

    Inputs X, filter, bias as Conv (bias required) and S with Y's shape and dtype; arguments as
    Conv.  The bias is added first, then S, then the ReLU, each rounded as the unfused ops round
    them.  Y may not alias S.  Inference only, CPU only; written by ``nbcaffe.Predictor`` into its
    private running net (nbcaffe/predictor/optimize.py) where Conv -> Sum -> Relu read each other's
    outputs only.
    """

    op_type = "ConvSumRelu"
    inputs = ("X", "filter", "bias", "S")
    num_inputs = (4, 4)
    devices = (CPU,)
    cpu = staticmethod(conv_sum_relu_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        out, types = Conv.infer(args, shapes[:3], dtypes[:3])
        if tuple(shapes[3]) != tuple(out[0]) or np.dtype(dtypes[3]) != np.dtype(types[0]):
            raise errors.ShapeError(f"ConvSumRelu: S {tuple(shapes[3])} {np.dtype(dtypes[3]).name} must have the"
                                    f" convolution's output shape {tuple(out[0])} and dtype {np.dtype(types[0]).name}")
        return out, types

    @staticmethod
    def reference(X, filter, bias, S, *, window, group=1, no_bias=False):  # noqa: A002 (Caffe2's name)
        (y,) = Conv.reference(X, filter, bias, window=window, group=group)
        y = (y + S).astype(y.dtype)
        return (np.where(y > 0, y, 0).astype(y.dtype),)

    def bind(self, inputs, outputs):
        args = self.forward_args(inputs, outputs, True)
        return bind_forward(*args, relu=True, res=inputs[3].reshape(args[3].shape))


def conv_prelu_cpu(x, w, b, slope, y, plan, scratch):
    """ConvPRelu: y = conv(x, w) + b, then PRelu(y, slope) in place (the registered CPU kernel;
    ConvPRelu.bind builds the same two calls with their views made once)."""
    conv_forward(x, w, b, y, plan, scratch)
    view = prelu_view("NCHW" if plan[0] else "NHWC", y.shape, slope.size)  # 5-D y: channels at 1 / last
    prelu_cpu(y.reshape(view), slope.reshape(-1), y.reshape(view))


@register_op
class ConvPRelu(Conv):
    """Y = PRelu(Conv(X, filter, bias), slope): a convolution and a PRelu in one op (MTCNN's
    layers), so small nets pay one op instead of two.

    Inputs X, filter, bias as Conv (bias required) and slope as PRelu (1 value, or one per output
    channel); arguments as Conv (``order`` also places PRelu's channel axis).  The PRelu runs
    after the convolution, in place on Y, with PRelu's own kernel: results equal Conv then PRelu
    bitwise.  Inference only, CPU only; written by ``nbcaffe.Predictor`` into its private running
    net (nbcaffe/predictor/optimize.py).
    """

    op_type = "ConvPRelu"
    inputs = ("X", "filter", "bias", "slope")
    num_inputs = (4, 4)
    devices = (CPU,)
    cpu = staticmethod(conv_prelu_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        out, types = Conv.infer(args, shapes[:3], dtypes[:3])
        prelu_view(args["order"], out[0], math.prod(shapes[3]))
        if np.dtype(dtypes[3]) != np.dtype(types[0]):
            raise errors.ShapeError(f"ConvPRelu: slope {np.dtype(dtypes[3]).name} must have Y's dtype"
                                    f" {np.dtype(types[0]).name}")
        return out, types

    @staticmethod
    def reference(X, filter, bias, slope, *, window, group=1, no_bias=False):  # noqa: A002 (Caffe2's name)
        (y,) = Conv.reference(X, filter, bias, window=window, group=group)
        return PRelu.reference(y, slope, order=window.order)

    def bind(self, inputs, outputs):
        slope = inputs[3]
        conv = bind_forward(*self.forward_args(inputs, outputs, True))
        y = outputs[0].reshape(prelu_view(self.window.order, outputs[0].shape, slope.size))
        prelu = functools.partial(prelu_cpu, y, slope.reshape(-1), y)

        def call():
            conv()
            prelu()

        return call


# registered CPU forward kernels -> their relu flag (Conv.bind builds their calls with bind_forward)
_CPU_FORWARD = {conv_cpu: False, conv_relu_cpu: True}


def _conv_grad_scratch(ctx, geo, group, m, dtype, need_dx):
    itemsize = np.dtype(dtype).itemsize
    cpu = ctx.device_type == CPU
    fplan, fshapes = filter_grad_plan(geo, group, m, itemsize, cpu)
    dplan, flipped, dshapes = data_grad_plan(geo, group, m, itemsize, cpu)
    fused = int(cpu and need_dx and fused_backward(fplan, dplan, flipped))
    scratch = (allocate(ctx, fshapes, dtype), allocate(ctx, dshapes, dtype) if need_dx and not fused else ())
    return (fplan, dplan, flipped, fused), scratch


def conv_gradient_cpu(x, w, dy, dw, db, dx, plans, scratch):
    """ConvGradient: dw, db (when db.size) and dx (when dx.size) of y = conv(x, w) + b."""
    fplan, dplan, flipped, fused = plans
    if fused and dx.size:  # dX in dW's tasks (fused_backward)
        conv_backward_filter(x, dy, dw, fplan, scratch[0], db if db.size else None, w, dx)
        return
    conv_backward_filter(x, dy, dw, fplan, scratch[0], db if db.size else None)
    if dx.size:
        conv_backward_data(dy, w, dx, dplan, flipped, scratch[1])


@register_op(aliases=("Conv1DGradient", "Conv2DGradient", "Conv3DGradient"))
class ConvGradient(WindowOp):
    """dfilter[m, c, k] = Σ_{n, o} dY[n, m, o] · X[n, g·C/G + c, o·stride − pad_head + k·dilation],
    dbias[m] = Σ_{n, o} dY[n, m, o], dX = Σ over the taps that read each X cell of filter · dY.

    Inputs (X, filter, dY); outputs in Caffe2's order (dfilter, dbias, dX): dbias is absent
    with no_bias=1, dX when the op lists fewer outputs.  Arguments as Conv, plus no_bias.
    """

    inputs, outputs = ("X", "filter", "dY"), ("dfilter", "dbias", "dX")
    num_outputs = (1, 3)
    args = {**cp.window_args("conv"), "group": 1, "no_gradient_to_input": False, "no_bias": False}
    ignored_args = Conv.ignored_args
    gradient = None
    cpu = staticmethod(conv_gradient_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "ConvGradient", "conv")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"])
        expected = geo.shape(m, geo.out_sp)
        if tuple(shapes[2]) != expected:
            raise errors.ShapeError(f"dY {tuple(shapes[2])} must have the convolution's output shape {expected}"
                                    f" (X {tuple(shapes[0])}, filter {tuple(shapes[1])}, {geo.describe()})")
        float_dtypes(["X", "filter", "dY"], dtypes)
        out = [tuple(shapes[1])] + ([] if args["no_bias"] else [(m,)]) + [tuple(shapes[0])]
        return out, [dtypes[1]] * (len(out) - 1) + [dtypes[0]]

    @staticmethod
    def reference(X, filter, dY, *, window, group=1, no_bias=False):  # noqa: A002
        geo, m = filter_geometry(window, X.shape, filter.shape, group)
        dw, db, dx = reference_conv_grads(X, filter, dY, geo, group)
        out = [filter_back(dw, geo.order, geo.rank).astype(filter.dtype)]
        if not no_bias:
            out.append(db.astype(filter.dtype))
        out.append(from_ncdhw(dx, geo.order, geo.rank).astype(X.dtype))
        return tuple(out)

    def bind(self, inputs, outputs):
        x, w, dy = inputs
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group)
        dw, db, dx = grad_outputs(self.ctx, outputs, self.args["no_bias"], x.dtype)
        plans, scratch = _conv_grad_scratch(self.ctx, geo, group, m, x.dtype, dx.size > 0)
        order, rank = geo.order, geo.rank
        return functools.partial(self.kernel, five(x, order, rank), w5(w, order, rank), five(dy, order, rank),
                                 w5(dw, order, rank), db, five(dx, order, rank) if dx.size else dx, plans, scratch)
