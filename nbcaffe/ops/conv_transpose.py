"""ConvTranspose and ConvTransposeGradient (1-3 spatial dims, NCHW and NHWC, groups).

ConvTranspose's filter is (C_in, C_out/group, *kernel) in NCHW and (C_in, *kernel,
C_out/group) in NHWC; bias (C_out,).  It is the adjoint of a convolution: its forward pass is
a convolution's input gradient, its input gradient a convolution, its filter gradient a
convolution's filter gradient with the roles of input and output swapped, so it runs the
drivers of nbcaffe/ops/_conv_cpu.py on the equivalent convolution's geometry.
"""

from __future__ import annotations

import functools

import numpy as np

from nbcaffe import errors
from nbcaffe.devices import CPU
from nbcaffe.ops import _conv_pool as cp
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
    to_ncdhw,
    w5,
)
from nbcaffe.ops._conv_cpu import (
    add_bias,
    allocate,
    bias_grad,
    conv_backward_data,
    conv_backward_filter,
    conv_forward,
    data_grad_plan,
    filter_grad_plan,
    forward_plan,
)
from nbcaffe.registry import register_op


def conv_transpose_cpu(x, w, b, y, plans, scratch):
    """ConvTranspose: y = the input gradient of the convolution whose output gradient is x
    (col2im(wᵀ·x), or a row-shift convolution with the flipped filter), plus b."""
    dplan, flipped, has_bias = plans
    conv_backward_data(x, w, y, dplan, flipped, scratch)
    if has_bias:
        add_bias(y, b, dplan[0])


@register_op
class ConvTranspose(WindowOp):
    """Y[n, co, i·stride − pad_head + k] += Σ_{ci} X[n, ci, i] · filter[ci, co − g·Co/G, k] + bias[co]
    (the transpose of Conv; g = the group of ci; cells beyond the output are dropped).

    Inputs X (N, C_in, *sp) | (N, *sp, C_in), filter (C_in, C_out/G, *kernel) | (C_in, *kernel,
    C_out/G), optional bias (C_out,).  Output size per dim: (in − 1)·stride + kernel + adj −
    pad_head − pad_tail.  Arguments: kernel | kernel_h + kernel_w | kernels; stride(s) (1);
    pad(s) | pad_t/l/b/r (0); adj | adj_h + adj_w | adjs (0, at most the stride); group (1);
    order ('NCHW'); legacy_pad (VALID and SAME mean no padding, as in Caffe2);
    no_gradient_to_input (0).  1-3 spatial dims (Caffe2 had 2-D only); no dilation (Caffe2).
    """

    inputs, outputs = ("X", "filter", "bias"), ("Y",)
    num_inputs = (2, 3)
    window_kind = "transpose"
    args = {**cp.window_args("transpose"), "group": 1, "no_gradient_to_input": False}
    ignored_args = ("deterministic", "exhaustive_search")
    cpu = staticmethod(conv_transpose_cpu)
    gradient = staticmethod(conv_gradient_maker)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "ConvTranspose", "transpose")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"], transpose=True)
        float_dtypes(["X", "filter", "bias"][:len(shapes)], dtypes)
        if len(shapes) > 2:
            check_bias(shapes[2], m)
        return [geo.shape(m, geo.in_sp)], [dtypes[0]]

    @staticmethod
    def reference(X, filter, bias=None, *, window, group=1, no_bias=False):  # noqa: A002
        geo, m = filter_geometry(window, X.shape, filter.shape, group, transpose=True)
        # the transpose is the convolution's input gradient with X as the output gradient
        shape = geo.shape(m, geo.in_sp)
        _, _, y = reference_conv_grads(np.zeros(shape), filter, X, geo, group)
        if bias is not None:
            y = y + np.asarray(bias, np.float64).reshape(1, -1, 1, 1, 1)
        return (from_ncdhw(y, geo.order, geo.rank).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, w = inputs[0], inputs[1]
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group, transpose=True)
        c_in = cp.split_shape(tuple(x.shape), geo.order)[1]
        dplan, flipped, shapes = data_grad_plan(geo, group, c_in, np.dtype(x.dtype).itemsize,
                                                self.ctx.device_type == CPU)
        has_bias = len(inputs) > 2
        b = inputs[2] if has_bias else w.reshape(-1)
        order, rank = geo.order, geo.rank
        return functools.partial(self.kernel, five(x, order, rank), w5(w, order, rank), b,
                                 five(outputs[0], order, rank), (dplan, flipped, int(has_bias)),
                                 allocate(self.ctx, shapes, x.dtype))


def conv_transpose_gradient_cpu(x, w, dy, dw, db, dx, plans, scratch):
    """ConvTransposeGradient: dw = the convolution filter gradient with input dy and output
    gradient x; db = Σ dy per channel; dx = conv(dy, w)."""
    fplan, xplan = plans
    if db.size:
        bias_grad(dy, db, fplan[0])
    conv_backward_filter(dy, x, dw, fplan, scratch[0])
    if dx.size:
        conv_forward(dy, w, w.reshape(-1), dx, xplan, scratch[1])


@register_op
class ConvTransposeGradient(WindowOp):
    """dfilter[ci, co, k] = Σ_{n, i} X[n, ci, i] · dY[n, co, i·stride − pad_head + k], dbias[co] =
    Σ dY[n, co, ·], dX = Conv(dY, filter) (same window); outputs (dfilter, dbias, dX) in
    Caffe2's order, dbias absent with no_bias=1, dX when fewer outputs are listed."""

    inputs, outputs = ("X", "filter", "dY"), ("dfilter", "dbias", "dX")
    num_outputs = (1, 3)
    window_kind = "transpose"
    args = {**cp.window_args("transpose"), "group": 1, "no_gradient_to_input": False, "no_bias": False}
    ignored_args = ConvTranspose.ignored_args
    gradient = None
    cpu = staticmethod(conv_transpose_gradient_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        window = cp.parse_window(args, "ConvTransposeGradient", "transpose")
        geo, m = filter_geometry(window, shapes[0], shapes[1], args["group"], transpose=True)
        expected = geo.shape(m, geo.in_sp)
        if tuple(shapes[2]) != expected:
            raise errors.ShapeError(f"dY {tuple(shapes[2])} must have ConvTranspose's output shape {expected}"
                                    f" (X {tuple(shapes[0])}, filter {tuple(shapes[1])})")
        float_dtypes(["X", "filter", "dY"], dtypes)
        out = [tuple(shapes[1])] + ([] if args["no_bias"] else [(m,)]) + [tuple(shapes[0])]
        return out, [dtypes[1]] * (len(out) - 1) + [dtypes[0]]

    @staticmethod
    def reference(X, filter, dY, *, window, group=1, no_bias=False):  # noqa: A002
        geo, m = filter_geometry(window, X.shape, filter.shape, group, transpose=True)
        # the convolution maps dY's shape to X's: its filter gradient has input dY, output grad X
        dw, db, _ = reference_conv_grads(dY, filter, X, geo, group)
        dx = reference_conv(dY, filter, None, geo, group)
        out = [filter_back(dw, geo.order, geo.rank).astype(filter.dtype)]
        if not no_bias:
            out.append(to_ncdhw(dY, geo.order, geo.rank).sum(axis=(0, 2, 3, 4)).astype(filter.dtype))
        out.append(from_ncdhw(dx, geo.order, geo.rank).astype(X.dtype))
        return tuple(out)

    def bind(self, inputs, outputs):
        x, w, dy = inputs
        group = self.args["group"]
        geo, m = filter_geometry(self.window, x.shape, w.shape, group, transpose=True)
        c_in = cp.split_shape(tuple(x.shape), geo.order)[1]
        dw, db, dx = grad_outputs(self.ctx, outputs, self.args["no_bias"], x.dtype)
        itemsize = np.dtype(x.dtype).itemsize
        cpu = self.ctx.device_type == CPU
        fplan, fshapes = filter_grad_plan(geo, group, c_in, itemsize, cpu)
        xplan, xshapes = forward_plan(geo, group, 0, c_in, itemsize, cpu)
        scratch = (allocate(self.ctx, fshapes, x.dtype), allocate(self.ctx, xshapes, x.dtype) if dx.size else ())
        order, rank = geo.order, geo.rank
        return functools.partial(self.kernel, five(x, order, rank), w5(w, order, rank), five(dy, order, rank),
                                 w5(dw, order, rank), db, five(dx, order, rank) if dx.size else dx,
                                 (fplan, xplan), scratch)
