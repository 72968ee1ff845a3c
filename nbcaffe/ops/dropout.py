"""Dropout and its gradient DropoutGrad (Caffe2's spelling of the gradient op's name).

Masks are random draws: NumPy's PCG64 ``Generator`` on the CPU (uniforms drawn in chunks of
:data:`CHUNK` into a scratch buffer, then thresholded by a numba kernel), the counter-based
hash generator of nbcaffe/cuda/fill.py on CUDA.  The generator is made once per op instance
from ``device_option.random_seed`` (fresh OS entropy without one), so a seeded op repeats its
masks when re-created and draws new ones on every run.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, O
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

CHUNK = 16384  # uniforms per Generator call on the CPU (64 KiB of float32 scratch)


class Kernels:
    """The training and inference kernels of Dropout (the CUDA mirror registers the same names)."""

    def __init__(self, train, test):
        self.train = train
        self.test = test


@numba.njit(cache=True)
def _dropout_apply(u, x, y, mask, ratio, scale):
    """mask[i] = u[i] >= ratio (kept with probability 1 - ratio); y[i] = x[i] * scale * mask[i].

    The product is formed as x * scale, then times 1 or 0, so a dropped inf or NaN gives NaN
    as in Caffe2 (X * scale * mask).  y may alias x.
    """
    if x.ctypes.data == y.ctypes.data:  # in place: one array, so LLVM need not check overlap
        for i in range(y.size):
            keep = u[i] >= ratio
            mask[i] = keep
            v = y[i] * scale
            y[i] = v if keep else v * 0.0
    else:
        for i in range(x.size):
            keep = u[i] >= ratio
            mask[i] = keep
            v = x[i] * scale
            y[i] = v if keep else v * 0.0


def dropout_cpu(rng, x, y, mask, uniforms, ratio, scale):
    """Training Dropout over flat x, y, mask: uniforms (<= CHUNK float32 scratch) are drawn from
    the NumPy Generator ``rng`` chunk by chunk; ``scale`` = 1 / (1 - ratio) in x's dtype."""
    n = x.size
    chunk = uniforms.size
    if n <= chunk:
        u = uniforms[:n]
        rng.random(out=u, dtype=np.float32)
        _dropout_apply(u, x, y, mask, ratio, scale)
        return
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        u = uniforms[: stop - start]
        rng.random(out=u, dtype=np.float32)
        _dropout_apply(u, x[start:stop], y[start:stop], mask[start:stop], ratio, scale)


@numba.njit(cache=True)
def dropout_test_cpu(x, y, mask, copy):
    """Inference Dropout: y = x (copied unless in place), every mask element True."""
    if copy:
        for i in range(x.size):
            y[i] = x[i]
    for i in range(mask.size):
        mask[i] = True


@register_op
class Dropout(Operator):
    """Y = X * mask / (1 - ratio) with mask ~ Bernoulli(1 - ratio) per element (training);
    Y = X (``is_test=1``).

    Outputs Y (X's shape; may alias X) and mask (bool, X's shape; True = kept).  Training needs
    both outputs; with ``is_test=1`` the mask is optional and, when named, all True (Caffe2 left
    it unfilled; all True makes DropoutGrad's formula hold in both modes).  Y is computed as
    X * (1 / (1 - ratio)) * mask with the scale in X's dtype, so Y == X * scale * mask exactly.
    Arguments: ``ratio`` 0.5 (probability of dropping, in [0, 1)), ``is_test`` 0.  Randomness:
    ``device_option.random_seed`` seeds the op's generator (fresh entropy without one); every
    run draws a new mask.
    """

    inputs, outputs = ("X",), ("Y", "mask")
    num_outputs = (1, 2)
    inplace = {0: 0}
    args = {"ratio": Arg("float", 0.5, "probability of dropping an element"),
            "is_test": Arg("bool", False, "inference: Y = X")}
    random = True
    cpu = Kernels(dropout_cpu, dropout_test_cpu)
    gradient = staticmethod(lambda op, g_output: dropout_gradient(op, g_output))

    _rng = None

    def setup(self):
        check_ratio(self)
        if not self.args["is_test"] and len(self.output_names) != 2:
            raise errors.SchemaError(f"{self.where()}: training (is_test=0) produces 2 outputs (Y, mask), the"
                                     f" OperatorDef names {len(self.output_names)}")

    @staticmethod
    def infer(args, shapes, dtypes):
        x = tuple(shapes[0])
        if not np.issubdtype(np.dtype(dtypes[0]), np.floating):
            raise errors.ShapeError(f"X must be a floating point tensor, got {np.dtype(dtypes[0]).name}")
        return [x, x], [dtypes[0], np.dtype(np.bool_)]

    @staticmethod
    def reference(X, ratio=0.5, is_test=False):
        if is_test:
            return X.copy(), np.ones(X.shape, np.bool_)
        mask = np.random.default_rng().random(X.shape) >= ratio
        scale = X.dtype.type(1.0 / (1.0 - ratio))
        return (X * scale * mask).astype(X.dtype), mask

    def generator(self):
        """The op's generator, made once per op instance (re-binding must not restart a seeded
        sequence)."""
        if self._rng is None:
            option = self.device_option
            seed = int(option.random_seed) if option is not None and option.HasField("random_seed") else None
            self._rng = self.ctx.make_rng(seed)
        return self._rng

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        n = schema.prod(tuple(x.shape))
        flat_x, flat_y = x.reshape(n), y.reshape(n)
        if self.args["is_test"]:
            mask = outputs[1].reshape(n) if len(outputs) > 1 else self.ctx.empty((0,), np.bool_)
            return functools.partial(self.kernel.test, flat_x, flat_y, mask, y is not x)
        ratio = float(self.args["ratio"])
        scale = np.dtype(x.dtype).type(1.0 / (1.0 - ratio))
        uniforms = self.ctx.empty((max(1, min(n, CHUNK)),), np.float32)
        return functools.partial(self.kernel.train, self.generator(), flat_x, flat_y, outputs[1].reshape(n),
                                 uniforms, ratio, scale)


def check_ratio(op):
    ratio = op.args["ratio"]
    if not 0.0 <= ratio < 1.0:
        raise errors.ArgumentError(f"{op.where()}: ratio must be in [0, 1), got {ratio}")


def dropout_gradient(op, g_output):
    """Caffe2's maker: DropoutGrad(dY, mask) -> dX in training, DropoutGrad(dY) with is_test=1."""
    args = schema.parse_args(Dropout.declared_args, op, "Dropout", True)
    ctx = GradientContext(op, g_output)
    ctx.add("DropoutGrad", [GO(0)] if args["is_test"] else [GO(0), O(1)], [GI(0)])
    return ctx.result()


@numba.njit(cache=True)
def dropout_grad_cpu(dy, mask, dx, scale, use_mask):
    """dx = dy * scale * mask over flat arrays (``use_mask``), else dx = dy (copy; may alias)."""
    if use_mask and dy.ctypes.data == dx.ctypes.data:  # in place: one array (no overlap check)
        for i in range(dx.size):
            v = dx[i] * scale
            dx[i] = v if mask[i] else v * 0.0
    elif use_mask:
        for i in range(dy.size):
            v = dy[i] * scale
            dx[i] = v if mask[i] else v * 0.0
    else:
        for i in range(dy.size):
            dx[i] = dy[i]


@register_op
class DropoutGrad(Operator):
    """dX = dY * mask / (1 - ratio) (training); dX = dY with ``is_test=1``.

    Inputs dY and mask (bool, dY's size; optional with is_test=1).  dX may alias dY.  Arguments
    as Dropout (copied by the maker).
    """

    inputs, outputs = ("dY", "mask"), ("dX",)
    num_inputs = (1, 2)
    inplace = {0: 0}
    args = dict(Dropout.args)
    gradient = None
    cpu = staticmethod(dropout_grad_cpu)

    def setup(self):
        check_ratio(self)
        if not self.args["is_test"] and len(self.input_names) != 2:
            raise errors.SchemaError(f"{self.where()}: training (is_test=0) needs the mask as input 1")

    @staticmethod
    def infer(args, shapes, dtypes):
        dy = tuple(shapes[0])
        if len(shapes) > 1:
            if schema.prod(shapes[1]) != schema.prod(dy):
                raise errors.ShapeError(f"mask {tuple(shapes[1])} must have as many elements as dY {dy}")
            if np.dtype(dtypes[1]) != np.bool_:
                raise errors.ShapeError(f"mask must be a bool tensor, got {np.dtype(dtypes[1]).name}")
        if not np.issubdtype(np.dtype(dtypes[0]), np.floating):
            raise errors.ShapeError(f"dY must be a floating point tensor, got {np.dtype(dtypes[0]).name}")
        return [dy], [dtypes[0]]

    @staticmethod
    def reference(dY, mask=None, ratio=0.5, is_test=False):
        if is_test:
            return (dY.copy(),)
        scale = dY.dtype.type(1.0 / (1.0 - ratio))
        return ((dY * scale * mask.reshape(dY.shape)).astype(dY.dtype),)

    def bind(self, inputs, outputs):
        dy, dx = inputs[0], outputs[0]
        n = schema.prod(tuple(dy.shape))
        use_mask = not self.args["is_test"]
        mask = inputs[1].reshape(n) if use_mask else self.ctx.empty((0,), np.bool_)
        scale = np.dtype(dy.dtype).type(1.0 / (1.0 - float(self.args["ratio"])))
        if not use_mask and dx is dy:
            return _noop
        return functools.partial(self.kernel, dy.reshape(n), mask, dx.reshape(n), scale, use_mask)


def _noop():
    pass
