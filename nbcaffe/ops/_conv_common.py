"""Shared by the Conv and ConvTranspose families: filter geometry and input checks, the 5-D
views the kernels take, the window-op base, Caffe2's gradient maker, and the float64 NumPy
references of a convolution and its gradients.
"""

from __future__ import annotations

import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GradientContext
from nbcaffe.operator import Operator
from nbcaffe.ops import _conv_pool as cp

# ============================================================================ NumPy references
# Written per kernel tap with padded copies and strided slices (no im2col), in float64.


def _pad_canonical(x5, heads, tails):
    """Zero-pad (or crop, for negative pads) the 3 trailing dims of x5 (N, C, D, H, W)."""
    shape = list(x5.shape)
    out_shape = shape[:2] + [s + h + t for s, h, t in zip(shape[2:], heads, tails)]
    out = np.zeros(out_shape, np.float64)
    src = [slice(None), slice(None)]
    dst = [slice(None), slice(None)]
    for s, h, t in zip(shape[2:], heads, tails):
        src.append(slice(max(0, -h), s - max(0, -t)))
        dst.append(slice(max(0, h), max(0, h) + s - max(0, -h) - max(0, -t)))
    out[tuple(dst)] = x5[tuple(src)]
    return out


def to_ncdhw(a, order, rank):
    """(N, C, D, H, W) float64 view/copy of an NCHW or NHWC tensor with `rank` spatial dims."""
    a = np.asarray(a, np.float64)
    if order == "NHWC":
        a = np.moveaxis(a, -1, 1)
    return a.reshape(a.shape[:2] + (1,) * (3 - rank) + a.shape[2:])


def from_ncdhw(a5, order, rank):
    a = a5.reshape(a5.shape[:2] + a5.shape[5 - rank:])
    if order == "NHWC":
        a = np.moveaxis(a, 1, -1)
    return np.ascontiguousarray(a)


def _filter_oikkk(w, order, rank):
    """(O, I, KD, KH, KW) float64 of a filter stored (O, I, *k) (NCHW) or (O, *k, I) (NHWC)."""
    w = np.asarray(w, np.float64)
    if order == "NHWC":
        w = np.moveaxis(w, -1, 1)
    return w.reshape(w.shape[:2] + (1,) * (3 - rank) + w.shape[2:])


def _taps(geo):
    canon = geo.canonical()
    k, s, d = canon[6:9], canon[9:12], canon[12:15]
    out = canon[3:6]
    for kd in range(k[0]):
        for kh in range(k[1]):
            for kw in range(k[2]):
                yield (kd, kh, kw), tuple(slice(t * dd, t * dd + ss * (o - 1) + 1, ss)
                                           for t, dd, ss, o in zip((kd, kh, kw), d, s, out))


def reference_conv(x, w, b, geo, group):
    """Y of a convolution (float64, canonical (N, M, Do, Ho, Wo))."""
    heads = (0,) * (3 - geo.rank) + geo.pad_head
    tails = (0,) * (3 - geo.rank) + geo.pad_tail
    xp = _pad_canonical(to_ncdhw(x, geo.order, geo.rank), heads, tails)
    wf = _filter_oikkk(w, geo.order, geo.rank)
    n, c = xp.shape[:2]
    m, cg = wf.shape[:2]
    mg = m // group
    y = np.zeros((n, m) + tuple(geo.canonical()[3:6]))
    for (kd, kh, kw), sl in _taps(geo):
        patch = xp[(slice(None), slice(None)) + sl]  # (N, C, Do, Ho, Wo)
        for g in range(group):
            y[:, g * mg:(g + 1) * mg] += np.einsum("mc,ncdhw->nmdhw", wf[g * mg:(g + 1) * mg, :, kd, kh, kw],
                                                   patch[:, g * cg:(g + 1) * cg])
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, m, 1, 1, 1)
    return y


def reference_conv_grads(x, w, dy, geo, group):
    """(dW (M, Cg, KD, KH, KW), db (M,), dX (N, C, D, H, W)) of a convolution, float64."""
    heads = (0,) * (3 - geo.rank) + geo.pad_head
    tails = (0,) * (3 - geo.rank) + geo.pad_tail
    x5 = to_ncdhw(x, geo.order, geo.rank)
    xp = _pad_canonical(x5, heads, tails)
    wf = _filter_oikkk(w, geo.order, geo.rank)
    dy5 = to_ncdhw(dy, geo.order, geo.rank)
    m, cg = wf.shape[:2]
    mg = m // group
    dw = np.zeros_like(wf)
    dxp = np.zeros_like(xp)
    for (kd, kh, kw), sl in _taps(geo):
        index = (slice(None), slice(None)) + sl
        patch = xp[index]
        for g in range(group):
            gy = dy5[:, g * mg:(g + 1) * mg]
            dw[g * mg:(g + 1) * mg, :, kd, kh, kw] += np.einsum("nmdhw,ncdhw->mc", gy, patch[:, g * cg:(g + 1) * cg])
            view = dxp[index]
            view[:, g * cg:(g + 1) * cg] += np.einsum("mc,nmdhw->ncdhw", wf[g * mg:(g + 1) * mg, :, kd, kh, kw], gy)
    # crop the padding back off (negative pads were crops: their cells get no gradient)
    d = [slice(None), slice(None)]
    for s, h, t in zip(x5.shape[2:], heads, tails):
        d.append(slice(max(0, h), max(0, h) + s - max(0, -h) - max(0, -t)))
    dx = np.zeros_like(x5)
    src = [slice(None), slice(None)] + [slice(max(0, -h), s - max(0, -t)) for s, h, t in zip(x5.shape[2:], heads,
                                                                                           tails)]
    dx[tuple(src)] = dxp[tuple(d)]
    db = dy5.sum(axis=(0, 2, 3, 4))
    return dw, db, dx


def filter_back(wf5, order, rank):
    """Inverse of _filter_oikkk: (O, I, KD, KH, KW) -> stored layout."""
    w = wf5.reshape(wf5.shape[:2] + wf5.shape[5 - rank:])
    if order == "NHWC":
        w = np.moveaxis(w, 1, -1)
    return np.ascontiguousarray(w)


# ============================================================================ op helpers


def float_dtypes(names, dtypes):
    for name, dtype in zip(names, dtypes):
        if dtype is not None and np.dtype(dtype).kind != "f":
            raise errors.ShapeError(f"{name} must be a floating tensor, got {np.dtype(dtype).name}")
    first = np.dtype(dtypes[0])
    for name, dtype in zip(names[1:], dtypes[1:]):
        if dtype is not None and np.dtype(dtype) != first:
            raise errors.ShapeError(f"{names[0]} and {name} must share a dtype; got {first.name} and"
                                    f" {np.dtype(dtype).name}")


def filter_geometry(window, x_shape, w_shape, group, transpose=False):
    """(geometry, output channels) of Conv / ConvTranspose for these shapes, filter checked.

    Conv filter: (M, C/G, *k) NCHW, (M, *k, C/G) NHWC.  ConvTranspose filter: (C_in, C_out/G,
    *k) NCHW, (C_in, *k, C_out/G) NHWC; the geometry returned for it is the equivalent
    convolution's (from the transpose's output to its input).
    """
    x_shape, w_shape = tuple(int(d) for d in x_shape), tuple(int(d) for d in w_shape)
    n, c, in_sp = cp.split_shape(x_shape, window.order, "X")
    rank = len(in_sp)
    what = "ConvTranspose filter" if transpose else "filter"
    if len(w_shape) != len(x_shape):
        raise errors.ShapeError(f"{what} {w_shape} must have as many dims as X {x_shape} (two channel dims and"
                                f" {rank} kernel dims)")
    if group < 1:
        raise errors.ShapeError(f"group must be >= 1, got {group}")
    if window.order == "NCHW":
        w_first, w_chan, w_k = w_shape[0], w_shape[1], w_shape[2:]
    else:
        w_first, w_chan, w_k = w_shape[0], w_shape[-1], w_shape[1:-1]
    kernel = window.kernel if isinstance(window.kernel, tuple) else (window.kernel,) * rank
    if len(kernel) == rank and tuple(kernel) != tuple(w_k):
        raise errors.ShapeError(f"{what} {w_shape} ({window.order}) has kernel {list(w_k)} but the kernel"
                                f" arguments say {list(kernel)}")
    if not transpose:
        if c % group or c != w_chan * group:
            raise errors.ShapeError(f"X {x_shape} ({window.order}) has {c} channels but filter {w_shape} expects"
                                    f" {w_chan} per group x group={group} = {w_chan * group}")
        if w_first % group:
            raise errors.ShapeError(f"filter {w_shape}: {w_first} output channels are not divisible by"
                                    f" group={group}")
        return cp.resolve(window, x_shape, "X"), w_first
    if w_first != c:
        raise errors.ShapeError(f"{what} {w_shape} ({window.order}) must start with X's {c} input channels: it is"
                                f" (C_in, C_out/group, *kernel) in NCHW, (C_in, *kernel, C_out/group) in NHWC")
    if c % group:
        raise errors.ShapeError(f"X {x_shape}: {c} input channels are not divisible by group={group}")
    m = w_chan * group
    return cp.transpose_geometry(window, x_shape, m, "X"), m


def check_bias(shape, m):
    if tuple(shape) != (m,):
        raise errors.ShapeError(f"bias {tuple(shape)} must be 1-D with one value per output channel ({m},)")


def five(a, order, rank):
    """A 5-D view (N, C, D, H, W) / (N, D, H, W, C) of an NCHW / NHWC array with `rank` spatial dims."""
    shape = tuple(a.shape)
    if order == "NCHW":
        return a.reshape(shape[:2] + (1,) * (3 - rank) + shape[2:])
    return a.reshape(shape[:1] + (1,) * (3 - rank) + shape[1:])


w5 = five  # a filter has the same dim pattern: (M, Cg, *k) / (M, *k, Cg)


class WindowOp(Operator):
    """Window ops parse their window arguments once, at creation."""

    window_kind = "conv"

    def setup(self):
        self.window = cp.parse_window(self.args, self.where(), self.window_kind)

    def reference_kwargs(self):
        return {"group": self.args.get("group", 1), "no_bias": self.args.get("no_bias", False),
                "window": self.window}


def conv_gradient_maker(op, g_output):
    """Caffe2's GetConvGradient / GetConvTransposeGradient: <Type>Gradient(X, filter, dY) ->
    (dfilter, [dbias], [dX]); without a bias input it adds no_bias=1; no_gradient_to_input=1
    drops dX."""
    ctx = GradientContext(op, g_output)
    compute_dx = not any(a.name == "no_gradient_to_input" and a.i for a in op.arg)
    outputs = [ctx.GI(1)]
    extra = {}
    if len(op.input) == 3:
        outputs.append(ctx.GI(2))
    else:
        extra["no_bias"] = 1
    if compute_dx:
        outputs.append(ctx.GI(0))
    ctx.add(op.type + "Gradient", [op.input[0], op.input[1], ctx.GO(0)], outputs, **extra)
    return ctx.result()


def grad_outputs(ctx, outputs, no_bias, dtype):
    """(dfilter, dbias, dX) from a gradient op's outputs; absent ones are empty arrays."""
    rest = list(outputs[1:])
    db = rest.pop(0) if not no_bias and rest else ctx.empty((0,), dtype)
    dx = rest.pop(0) if rest else ctx.empty((0,), dtype)
    return outputs[0], db, dx
