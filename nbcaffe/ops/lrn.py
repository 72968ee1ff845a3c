"""Local response normalization across channels: LRN and LRNGradient.

Kernels work on a C-contiguous (A, C, B) view of the input (see ``lrn_view``): NCHW
``(N, C, H*W)``, NHWC ``(N*H*W, C, 1)``; the channel window sums run along axis 1.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, I, O
from nbcaffe.operator import Operator
from nbcaffe.ops._norm_kernels import channels, check_floating, check_order, noop
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


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
            return noop
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
            return noop
        return functools.partial(self.kernel, x.reshape(view), y.reshape(view), scale.reshape(view),
                                 dy.reshape(view), recompute, *self.lrn_params(),
                                 self.ctx.empty(view, x.dtype), outputs[0].reshape(view))
