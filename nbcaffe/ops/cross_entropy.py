"""Cross-entropy losses: SoftmaxWithLoss (softmax and its negative log-likelihood in one op),
LabelCrossEntropy (class-index labels), CrossEntropy (soft labels), and their gradient ops.

Kernels that read class-index labels check each label's range and return the position of the
first bad one (-1 when all are good); the op turns it into a ShapeError naming the label.
The other losses (SquaredL2Distance, AveragedLoss) are in loss.py.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, I, O, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import SizeSwitch, choose
from nbcaffe.ops.activation import softmax_2d_reference
from nbcaffe.registry import register_op

LOG_CLAMP = 1e-20  # Caffe2 clamps probabilities before log so a zero never gives -inf


@numba.njit(cache=True)
def softmax_loss_cpu(x, label, weight, use_weight, p, loss, scale):
    """Softmax of x (N, D) into p and the weighted mean of -log p[i, label[i]] into loss[0].

    label: N ints in [0, D); weight: N floats, read when use_weight.  Returns -1, or the
    index of the first out-of-range label (the caller raises).
    """
    n, d = x.shape
    total = 0.0
    weight_sum = 0.0
    for i in range(n):
        lab = label[i]
        if lab < 0 or lab >= d:
            return i
        m = x[i, 0]
        for j in range(1, d):
            if x[i, j] > m:
                m = x[i, j]
        s = 0.0
        for j in range(d):
            e = math.exp(x[i, j] - m)
            p[i, j] = e
            s += e
        inv = 1.0 / s
        for j in range(d):
            p[i, j] *= inv
        w = weight[i] if use_weight else 1.0
        # log-softmax directly (x - m - log s) stays finite where p underflows to 0
        total += -(x[i, lab] - m - math.log(s)) * w
        weight_sum += w
    loss[0] = total * scale / weight_sum if weight_sum != 0.0 else 0.0
    return -1


@numba.njit(cache=True)
def softmax_loss_prob_cpu(x, label, weight, use_weight, p, loss, scale):
    """As softmax_loss_cpu but label is (N, D) probabilities: loss = -sum label * log p."""
    n, d = x.shape
    total = 0.0
    weight_sum = 0.0
    for i in range(n):
        m = x[i, 0]
        for j in range(1, d):
            if x[i, j] > m:
                m = x[i, j]
        s = 0.0
        for j in range(d):
            e = math.exp(x[i, j] - m)
            p[i, j] = e
            s += e
        inv = 1.0 / s
        w = weight[i] if use_weight else 1.0
        row = 0.0
        for j in range(d):
            p[i, j] *= inv
            row += -math.log(max(p[i, j], 1e-20)) * label[i, j]
        total += row * w
        weight_sum += w
    loss[0] = total * scale / weight_sum if weight_sum != 0.0 else 0.0
    return -1


@numba.njit(cache=True)
def softmax_loss_spatial_cpu(x, label, weight, use_weight, p, loss, scale):
    """Spatial mode: x (N, C, H*W) softmaxed over C at every location; label (N, H*W) ints,
    -1 = ignore; weight (N, H*W).  Returns -1 or the flat index of a bad label."""
    n, c, hw = x.shape
    total = 0.0
    weight_sum = 0.0
    for i in range(n):
        for k in range(hw):
            m = x[i, 0, k]
            for j in range(1, c):
                if x[i, j, k] > m:
                    m = x[i, j, k]
            s = 0.0
            for j in range(c):
                e = math.exp(x[i, j, k] - m)
                p[i, j, k] = e
                s += e
            inv = 1.0 / s
            for j in range(c):
                p[i, j, k] *= inv
            lab = label[i, k]
            if lab == -1:
                continue
            if lab < 0 or lab >= c:
                return i * hw + k
            w = weight[i, k] if use_weight else 1.0
            total += -math.log(max(p[i, lab, k], 1e-20)) * w
            weight_sum += w
    loss[0] = total * scale / weight_sum if weight_sum != 0.0 else 0.0
    return -1


def softmax_loss_vector(x, label, weight, use_weight, p, loss, scale):
    """NumPy form of softmax_loss_cpu (same contract) for large inputs: SIMD exp."""
    n, d = x.shape
    bad = np.flatnonzero((label < 0) | (label >= d))
    if bad.size:
        return int(bad[0])
    m = x.max(axis=1, keepdims=True)
    np.subtract(x, m, out=p)
    np.exp(p, out=p)
    s = p.sum(axis=1, keepdims=True, dtype=np.float64)
    # divide by the sum rounded to p's dtype: a float32 / float64 divide casts every element
    # (1.4 of the op's 3.5 ms at 1024x1000)
    np.divide(p, s.astype(p.dtype), out=p)
    rows = np.arange(n)
    neg_logp = -(x[rows, label].astype(np.float64) - m[:, 0] - np.log(s[:, 0]))
    if use_weight:
        w = weight.astype(np.float64)
        total, weight_sum = float((neg_logp * w).sum()), float(w.sum())
    else:
        total, weight_sum = float(neg_logp.sum()), float(n)
    loss[0] = total * scale / weight_sum if weight_sum != 0.0 else 0.0
    return -1


class SoftmaxLossKernels:
    __slots__ = ("plain", "prob", "spatial")

    def __init__(self, plain, prob, spatial):
        self.plain = plain
        self.prob = prob
        self.spatial = spatial


def _check_label_result(bad, label, limit, where_text):
    if bad >= 0:
        value = np.asarray(label).reshape(-1)[bad]
        raise errors.ShapeError(
            f"label {value} at position {bad} is outside [0, {limit}){where_text}")


@register_op
class SoftmaxWithLoss(Operator):
    """softmax = Softmax(logits); loss = scale * sum_i w_i * (-log softmax[i, label_i]) / sum_i w_i.

    logits are flattened to (N, D) at ``axis`` (default 1); labels are N ints in [0, D).
    ``label_prob=1``: labels are (N, D) probabilities and the loss is -sum label * log p.
    ``spatial=1``: logits are (N, C, H, W), softmax runs over C at every pixel, labels are
    (N, H, W) with -1 meaning "ignore", and the optional weights are (N, H, W).
    Optional input 2 weights the samples.  loss is a 0-d float tensor; it is 0 when the
    weights sum to 0.
    """

    inputs, outputs = ("logits", "labels", "weight_tensor"), ("softmax", "loss")
    num_inputs = (2, 3)
    args = {"scale": 1.0, "label_prob": 0, "spatial": 0, "axis": 1, "order": "NCHW"}
    gradient = staticmethod(lambda op, g_output: softmax_with_loss_gradient(op, g_output))
    cpu = SoftmaxLossKernels(SizeSwitch(softmax_loss_cpu, softmax_loss_vector), softmax_loss_prob_cpu,
                             softmax_loss_spatial_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        x, label = tuple(shapes[0]), tuple(shapes[1])
        if args["spatial"]:
            if len(x) != 4:
                raise errors.ShapeError(f"spatial=1 needs 4-D logits (N, C, H, W), got {x}")
            if schema.prod(label) != x[0] * x[2] * x[3]:
                raise errors.ShapeError(f"spatial=1 needs labels of N*H*W={x[0] * x[2] * x[3]} elements, got {label}")
        else:
            axis = schema.canonical_axis(args["axis"], max(len(x), 1))
            n, d = schema.flatten_2d(x, axis)
            if args["label_prob"]:
                if schema.prod(label) != n * d:
                    raise errors.ShapeError(f"label_prob=1 needs labels shaped like the logits ({n}, {d}), got {label}")
            elif schema.prod(label) != n:
                raise errors.ShapeError(
                    f"logits {x} give N={n} rows but labels {label} hold {schema.prod(label)} values")
            if len(shapes) > 2 and schema.prod(shapes[2]) != n:
                raise errors.ShapeError(f"weights {tuple(shapes[2])} must hold one value per row (N={n})")
        if not np.issubdtype(dtypes[0], np.floating):
            raise errors.ShapeError(f"logits must be floating point, got {np.dtype(dtypes[0]).name}")
        return [x, ()], [dtypes[0], dtypes[0]]

    def output_spec(self, inputs):
        label_dtype = np.dtype(inputs[1].dtype)
        if not self.args["label_prob"] and not np.issubdtype(label_dtype, np.integer):
            # Class-index labels are ints (Caffe2 reads int32); without this check a float label
            # tensor fails deep inside numba's type inference.  Checked at run time, not in
            # infer: static inference assumes FLOAT for blobs given only by their dimensions.
            raise errors.ShapeError(
                f"labels must be an integer tensor of class indices, got {label_dtype.name}"
                f" (use label_prob=1 for probability labels)")
        return super().output_spec(inputs)

    @staticmethod
    def reference(logits, labels, weight_tensor=None, scale=1.0, label_prob=0, spatial=0, axis=1):
        if spatial:
            n, c, h, w = logits.shape
            x = logits.astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, c)
            p = softmax_2d_reference(x)
            lab = labels.reshape(-1).astype(np.int64)
            wts = np.ones(lab.size) if weight_tensor is None else weight_tensor.reshape(-1).astype(np.float64)
            keep = lab != -1
            losses = -np.log(np.maximum(p[np.arange(lab.size)[keep], lab[keep]], LOG_CLAMP)) * wts[keep]
            total_w = wts[keep].sum()
            probs = p.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        else:
            axis = axis + logits.ndim if axis < 0 else axis
            n, d = schema.flatten_2d(logits.shape, axis)
            x = logits.reshape(n, d).astype(np.float64)
            p = softmax_2d_reference(x)
            wts = np.ones(n) if weight_tensor is None else weight_tensor.reshape(-1).astype(np.float64)
            if label_prob:
                losses = -(np.log(np.maximum(p, LOG_CLAMP)) * labels.reshape(n, d)).sum(axis=1) * wts
            else:
                lab = labels.reshape(-1).astype(np.int64)
                logp = x - x.max(axis=1, keepdims=True)
                logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
                losses = -logp[np.arange(n), lab] * wts
            total_w = wts.sum()
            probs = p.reshape(logits.shape)
        loss = losses.sum() * scale / total_w if total_w != 0 else 0.0
        return probs.astype(logits.dtype), np.asarray(loss, dtype=logits.dtype)

    def bind(self, inputs, outputs):
        x, label = inputs[0], inputs[1]
        weight = inputs[2] if len(inputs) > 2 else None
        p, loss = outputs
        scale = float(self.args["scale"])
        use_weight = weight is not None
        if self.args["spatial"]:
            n, c, h, w = x.shape
            args = (x.reshape(n, c, h * w), label.reshape(n, h * w),
                    weight.reshape(n, h * w) if use_weight else self.ctx.zeros((1, 1), x.dtype),
                    use_weight, p.reshape(n, c, h * w), loss.reshape(1), scale)
            kernel, limit = self.kernel.spatial, c
        else:
            axis = schema.canonical_axis(self.args["axis"], max(len(x.shape), 1))
            n, d = schema.flatten_2d(x.shape, axis)
            if self.args["label_prob"]:
                kernel, lab = self.kernel.prob, label.reshape(n, d)
            else:
                kernel, lab = choose(self.kernel.plain, n * d), label.reshape(n)
            args = (x.reshape(n, d), lab, weight.reshape(n) if use_weight else self.ctx.zeros(1, x.dtype),
                    use_weight, p.reshape(n, d), loss.reshape(1), scale)
            limit = d
            if n * d == 0:
                return functools.partial(_zero_loss, loss.reshape(1))
        where_text = "" if not self.args["spatial"] else " (spatial mode; -1 means ignore)"

        def call():
            _check_label_result(kernel(*args), label, limit, where_text)

        return call


def _zero_loss(loss):
    loss[0] = 0


@numba.njit(cache=True)
def label_cross_entropy_cpu(x, label, y):
    """y[i] = -log(max(x[i, label[i]], 1e-20)) for x (N, D); returns -1 or a bad row."""
    n, d = x.shape
    for i in range(n):
        lab = label[i]
        if lab < 0 or lab >= d:
            return i
        y[i] = -math.log(max(x[i, lab], 1e-20))
    return -1


@register_op
class LabelCrossEntropy(Operator):
    """Y[i] = -log(max(X[i, label[i]], 1e-20)) for probabilities X (N, D) and int labels (N).

    X may also be 1-D (one sample of D classes).
    """

    inputs, outputs = ("X", "label"), ("Y",)
    cpu = staticmethod(label_cross_entropy_cpu)
    gradient = simple_gradient("LabelCrossEntropyGradient", [I(0), I(1), GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        x, label = tuple(shapes[0]), tuple(shapes[1])
        if len(x) not in (1, 2):
            raise errors.ShapeError(f"X must be 2-D (N, D) or 1-D, got {x}")
        n = x[0] if len(x) == 2 else 1
        if schema.prod(label) != n:
            raise errors.ShapeError(f"X {x} has N={n} rows but label {label} holds {schema.prod(label)} values")
        return [(n,)], [dtypes[0]]

    def output_spec(self, inputs):
        # Checked at run time, not in infer: InferShapesAndTypes assumes FLOAT for blobs given
        # only by their dimensions (Caffe2's default), which must not fail a net's inference.
        label_dtype = np.dtype(inputs[1].dtype)
        if not np.issubdtype(label_dtype, np.integer):
            raise errors.ShapeError(f"label must be an integer tensor, got {label_dtype.name}")
        return super().output_spec(inputs)

    @staticmethod
    def reference(X, label):
        x = X.reshape(-1, X.shape[-1]).astype(np.float64)
        lab = label.reshape(-1).astype(np.int64)
        return (-np.log(np.maximum(x[np.arange(x.shape[0]), lab], LOG_CLAMP)).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, label = inputs
        d = tuple(x.shape)[-1]
        n = x.shape[0] if len(x.shape) == 2 else 1
        args = (x.reshape(n, d), label.reshape(n), outputs[0])
        kernel = self.kernel

        def call():
            _check_label_result(kernel(*args), label, d, "")

        return call


@numba.njit(cache=True)
def cross_entropy_cpu(x, label, y):
    """y[i] = -sum_j label[i, j] * log(max(x[i, j], 1e-20)) for x, label (N, D)."""
    n, d = x.shape
    for i in range(n):
        total = 0.0
        for j in range(d):
            total -= label[i, j] * math.log(max(x[i, j], 1e-20))
        y[i] = total


@register_op
class CrossEntropy(Operator):
    """Y[i] = -sum_j label[i, j] * log(max(X[i, j], 1e-20)) for probabilities X and soft labels
    of the same shape (N, D) (or 1-D: one sample)."""

    inputs, outputs = ("X", "label"), ("Y",)
    cpu = staticmethod(cross_entropy_cpu)
    gradient = simple_gradient("CrossEntropyGradient", [I(0), I(1), GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        x, label = tuple(shapes[0]), tuple(shapes[1])
        if x != label:
            raise errors.ShapeError(f"X {x} and label {label} must have the same shape")
        if len(x) not in (1, 2):
            raise errors.ShapeError(f"X must be 2-D (N, D) or 1-D, got {x}")
        return [(x[0] if len(x) == 2 else 1,)], [dtypes[0]]

    @staticmethod
    def reference(X, label):
        x = X.reshape(-1, X.shape[-1]).astype(np.float64)
        lab = label.reshape(x.shape).astype(np.float64)
        return ((-(lab * np.log(np.maximum(x, LOG_CLAMP))).sum(axis=1)).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, label = inputs
        d = tuple(x.shape)[-1]
        n = x.shape[0] if len(x.shape) == 2 else 1
        return functools.partial(self.kernel, x.reshape(n, d), label.reshape(n, d), outputs[0])


# ----------------------------------------------------------------------------- gradients

def softmax_with_loss_gradient(op, g_output):
    """Caffe2's maker: SoftmaxWithLossGradient(X, label, [weight], softmax, d_loss) -> dX."""
    ctx = GradientContext(op, g_output)
    inputs = [I(0), I(1)] + ([I(2)] if len(op.input) == 3 else []) + [O(0), GO(1)]
    ctx.add("SoftmaxWithLossGradient", inputs, [GI(0)])
    return ctx.result()


@numba.njit(cache=True)
def softmax_loss_grad_cpu(p, label, weight, use_weight, ignore_minus_one, length, inner, dloss, scale, dx):
    """dX of SoftmaxWithLoss with int labels, over flat arrays: row r starts at
    (r // inner) * length * inner + r % inner with elements ``inner`` apart (inner = 1: plain
    (N, D); inner = H*W: spatial, where label -1 is ignored).  Returns -1 or a bad row."""
    rows = dx.size // length
    total_w = 0.0
    for r in range(rows):
        base = (r // inner) * length * inner + r % inner
        lab = label[r]
        if ignore_minus_one and lab == -1:
            for j in range(length):
                dx[base + j * inner] = 0.0
            continue
        if lab < 0 or lab >= length:
            return r
        w = weight[r] if use_weight else 1.0
        for j in range(length):
            k = base + j * inner
            dx[k] = p[k] * w
        dx[base + lab * inner] -= w
        total_w += w
    factor = scale * dloss[0] / total_w if total_w > 0.0 else 0.0
    for i in range(dx.size):
        dx[i] *= factor
    return -1


@numba.njit(cache=True)
def softmax_loss_prob_grad_cpu(p, label, weight, use_weight, length, dloss, scale, dx):
    """dX of SoftmaxWithLoss with probability labels (N, D) laid out like p (flat)."""
    rows = dx.size // length
    total_w = 0.0
    for r in range(rows):
        w = weight[r] if use_weight else 1.0
        for j in range(length):
            k = r * length + j
            dx[k] = (p[k] - label[k]) * w
        total_w += w
    factor = scale * dloss[0] / total_w if total_w > 0.0 else 0.0
    for i in range(dx.size):
        dx[i] *= factor
    return -1


class SoftmaxLossGradKernels:
    __slots__ = ("labels", "prob")

    def __init__(self, labels, prob):
        self.labels = labels
        self.prob = prob


@register_op
class SoftmaxWithLossGradient(Operator):
    """dX = scale * d_loss / Σw * w_i * (softmax - onehot(label)) (or - label probabilities);
    rows with label -1 in spatial mode get 0.  Inputs: X, label, [weight], softmax, d_loss."""

    inputs, outputs = ("X", "label", "weight", "softmax", "d_loss"), ("dX",)
    num_inputs = (4, 5)
    args = dict(SoftmaxWithLoss.args)
    gradient = None
    cpu = SoftmaxLossGradKernels(softmax_loss_grad_cpu, softmax_loss_prob_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(X, label, *rest, scale=1.0, label_prob=0, spatial=0, axis=1):
        weight = rest[0] if len(rest) == 3 else None
        p, d_loss = rest[-2], rest[-1]
        p64 = p.astype(np.float64)
        if spatial:
            n, c, h, w = X.shape
            lab = label.reshape(n, h, w).astype(np.int64)
            wts = np.ones((n, h, w)) if weight is None else weight.reshape(n, h, w).astype(np.float64)
            keep = lab != -1
            onehot = np.zeros_like(p64)
            nn, hh, ww = np.nonzero(keep)
            onehot[nn, lab[keep], hh, ww] = 1.0
            dx = (p64 - onehot) * (wts * keep)[:, None]
            total = (wts * keep).sum()
        else:
            axis = axis + X.ndim if axis < 0 else axis
            n, d = schema.flatten_2d(X.shape, axis)
            p2 = p64.reshape(n, d)
            wts = np.ones(n) if weight is None else weight.reshape(n).astype(np.float64)
            if label_prob:
                target = label.reshape(n, d).astype(np.float64)
            else:
                target = np.zeros((n, d))
                target[np.arange(n), label.reshape(n).astype(np.int64)] = 1.0
            dx = ((p2 - target) * wts[:, None]).reshape(X.shape)
            total = wts.sum()
        factor = scale * float(np.asarray(d_loss).reshape(-1)[0]) / total if total > 0 else 0.0
        return ((dx * factor).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, label = inputs[0], inputs[1]
        weight = inputs[2] if len(inputs) == 5 else None
        p, d_loss = inputs[-2], inputs[-1]
        dx = outputs[0]
        shape = tuple(x.shape)
        spatial = bool(self.args["spatial"])
        if spatial:
            length, inner = shape[1], shape[2] * shape[3]
        else:
            axis = schema.canonical_axis(self.args["axis"], max(len(shape), 1))
            _n, length = schema.flatten_2d(shape, axis)
            inner = 1
        if length == 0 or x.size == 0:
            return _noop
        use_weight = weight is not None
        w = weight.reshape(weight.size) if use_weight else self.ctx.zeros(1, x.dtype)
        common = (p.reshape(p.size), label.reshape(label.size), w, use_weight)
        tail = (d_loss.reshape(1), float(self.args["scale"]), dx.reshape(dx.size))
        if self.args["label_prob"] and not spatial:
            kernel, args = self.kernel.prob, common + (length,) + tail
        else:
            kernel, args = self.kernel.labels, common + (spatial, length, inner) + tail

        def call():
            _check_label_result(kernel(*args), label, length, "")

        return call


def _noop():
    pass


@numba.njit(cache=True)
def label_cross_entropy_grad_cpu(x, label, dy, dx):
    """dx[i, label[i]] = -dy[i] / max(x[i, label[i]], 1e-20), 0 elsewhere; returns -1 or a bad row."""
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            dx[i, j] = 0.0
        lab = label[i]
        if lab < 0 or lab >= d:
            return i
        dx[i, lab] = -dy[i] / max(x[i, lab], 1e-20)
    return -1


@register_op
class LabelCrossEntropyGradient(Operator):
    """dX[i, label[i]] = -dY[i] / max(X[i, label[i]], 1e-20); every other entry 0."""

    inputs, outputs = ("X", "label", "dY"), ("dX",)
    gradient = None
    cpu = staticmethod(label_cross_entropy_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(X, label, dY):
        x = X.reshape(-1, X.shape[-1]).astype(np.float64)
        n = x.shape[0]
        lab = label.reshape(-1).astype(np.int64)
        dx = np.zeros_like(x)
        dx[np.arange(n), lab] = -dY.reshape(-1) / np.maximum(x[np.arange(n), lab], LOG_CLAMP)
        return (dx.reshape(X.shape).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, label, dy = inputs
        d = tuple(x.shape)[-1]
        n = x.shape[0] if len(x.shape) == 2 else 1
        args = (x.reshape(n, d), label.reshape(n), dy.reshape(n), outputs[0].reshape(n, d))
        kernel = self.kernel

        def call():
            _check_label_result(kernel(*args), label, d, "")

        return call


@numba.njit(cache=True)
def cross_entropy_grad_cpu(x, label, dy, dx):
    """dx[i, j] = -dy[i] * label[i, j] / max(x[i, j], 1e-20)."""
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            dx[i, j] = -dy[i] * label[i, j] / max(x[i, j], 1e-20)


@register_op
class CrossEntropyGradient(Operator):
    """dX[i, j] = -dY[i] * label[i, j] / max(X[i, j], 1e-20)."""

    inputs, outputs = ("X", "label", "dY"), ("dX",)
    gradient = None
    cpu = staticmethod(cross_entropy_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(X, label, dY):
        x = X.reshape(-1, X.shape[-1]).astype(np.float64)
        lab = label.reshape(x.shape).astype(np.float64)
        return ((-dY.reshape(-1, 1) * lab / np.maximum(x, LOG_CLAMP)).reshape(X.shape).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, label, dy = inputs
        d = tuple(x.shape)[-1]
        n = x.shape[0] if len(x.shape) == 2 else 1
        return functools.partial(self.kernel, x.reshape(n, d), label.reshape(n, d), dy.reshape(n),
                                 outputs[0].reshape(n, d))
