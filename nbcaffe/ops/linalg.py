"""Linear algebra: MatMul, BatchMatMul and ElementwiseLinear, with their gradients.

CPU GEMMs are NumPy's BLAS calls split over nbcaffe's task pool (``threads.matmul`` /
``threads.batch_matmul``: ``np.dot`` / ``np.matmul`` with ``out=``, transposes as
strided views, which NumPy hands to BLAS as transpose flags); CUDA GEMMs are the tiled
shared-memory kernel of nbcaffe/cuda/linalg.py.  Gradients follow Caffe2's makers: MatMul and
BatchMatMul differentiate into MatMul / BatchMatMul ops with transpose flags.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema, threads
from nbcaffe.autograd import GI, GO, GradientContext, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops import reduction
from nbcaffe.registry import register_op


def _same_dtype(names, dtypes):
    if any(d != dtypes[0] for d in dtypes):
        shown = ", ".join(f"{n} {np.dtype(d).name}" for n, d in zip(names, dtypes))
        raise errors.ShapeError(f"inputs must share one dtype; got {shown} (add a Cast op)")


def _numeric(name, dtype):
    if np.dtype(dtype).kind not in "fiu":
        raise errors.ShapeError(f"{name} must be a numeric tensor, got {np.dtype(dtype).name}")


# ------------------------------------------------------------------------ MatMul


def matmul_cpu(a2, b2, y2, trans_a, trans_b, offsets):
    """y2 (M, N) = op(a2) · op(b2); op transposes when the flag is set (BLAS via NumPy).
    ``offsets`` ((2, 1) zeros) is for the CUDA kernel's batch addressing; unused here."""
    threads.matmul(a2.T if trans_a else a2, b2.T if trans_b else b2, y2)


def batch_offsets(batch, x1_view, x2_view):
    """(2, prod(batch)) int64: where each batch's matrix starts in flat x1 and flat x2, for views
    of equal rank whose batch dims broadcast to ``batch`` (the CUDA GEMM's addressing)."""
    rows = []
    for view in (x1_view, x2_view):
        lead = tuple(view[:-2])
        index = np.arange(schema.prod(lead), dtype=np.int64).reshape(lead)
        rows.append(np.broadcast_to(index, batch).reshape(-1) * (view[-2] * view[-1]))
    return np.stack(rows)


def matmul_dims(args, a_shape, b_shape):
    """((A rows, A cols), (B rows, B cols), M, K, N) of MatMul; ShapeError naming the mismatch."""
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    axis_a = schema.canonical_axis(args["axis_a"], len(a_shape), f"axis_a (A {a_shape})")
    axis_b = schema.canonical_axis(args["axis_b"], len(b_shape), f"axis_b (B {b_shape})")
    a2 = schema.flatten_2d(a_shape, axis_a)
    b2 = schema.flatten_2d(b_shape, axis_b)
    m, k = (a2[1], a2[0]) if args["trans_a"] else a2
    k_b, n = (b2[1], b2[0]) if args["trans_b"] else b2
    if k != k_b:
        a_text = f"A {a_shape} viewed as {a2} at axis_a={axis_a}" + (", transposed" if args["trans_a"] else "")
        b_text = f"B {b_shape} viewed as {b2} at axis_b={axis_b}" + (", transposed" if args["trans_b"] else "")
        raise errors.ShapeError(f"{a_text} gives (M, K) = ({m}, {k}) but {b_text} gives (K, N) = ({k_b}, {n});"
                                f" the K dims must match")
    return a2, b2, m, k, n


def matmul_gradient(op, g_output):
    """Caffe2's GetMatMulGradient: two MatMul ops with transpose flags and the axes moved so
    that each gradient is computed on the same 2-D views; the third input gives each gradient
    its input's shape.  (Caffe2 stored the axes in a bool, so axis > 1 became 1; nbcaffe keeps
    the real axis.)"""
    if len(op.input) not in (2, 3):
        raise errors.SchemaError(f"MatMul gradient needs 2 or 3 inputs, the op has {len(op.input)}")
    given = {a.name: a.i for a in op.arg}
    trans_a, trans_b = bool(given.get("trans_a", 0)), bool(given.get("trans_b", 0))
    axis_a, axis_b = int(given.get("axis_a", 1)), int(given.get("axis_b", 1))
    ctx = GradientContext(op, g_output)
    add = functools.partial(ctx.add, "MatMul", copy_arguments=False)
    if trans_a and trans_b:  # Y = A'B': dA = B'G', dB = G'A'
        add([I(1), GO(0), I(0)], [GI(0)], trans_a=1, trans_b=1, axis_a=axis_b)
        add([GO(0), I(0), I(1)], [GI(1)], trans_a=1, trans_b=1, axis_b=axis_a)
    elif trans_a:  # Y = A'B: dA = B G', dB = A G
        add([I(1), GO(0), I(0)], [GI(0)], trans_b=1, axis_a=axis_b)
        add([I(0), GO(0), I(1)], [GI(1)], axis_a=axis_a)
    elif trans_b:  # Y = A B': dA = G B, dB = G'A
        add([GO(0), I(1), I(0)], [GI(0)], axis_b=axis_b)
        add([GO(0), I(0), I(1)], [GI(1)], trans_a=1, axis_b=axis_a)
    else:  # Y = A B: dA = G B', dB = A'G
        add([GO(0), I(1), I(0)], [GI(0)], trans_b=1, axis_b=axis_b)
        add([I(0), GO(0), I(1)], [GI(1)], trans_a=1, axis_a=axis_a)
    return ctx.result()


@register_op
class MatMul(Operator):
    """Y = op(A) · op(B): A viewed as 2-D (A.dims[:axis_a], A.dims[axis_a:]) and B likewise at
    ``axis_b`` (defaults 1), op transposing when ``trans_a`` / ``trans_b`` is set (default 0).

    Y is 2-D (M, N).  With an optional third input, Y takes that input's shape instead (it must
    hold M*N elements): Caffe2's gradient ops use it to give each gradient its input's shape.
    A and B must share one numeric dtype.
    """

    inputs, outputs = ("A", "B", "shape_like"), ("Y",)
    num_inputs = (2, 3)
    args = {"axis_a": 1, "axis_b": 1, "trans_a": False, "trans_b": False}
    cpu = staticmethod(matmul_cpu)
    gradient = staticmethod(matmul_gradient)

    @staticmethod
    def infer(args, shapes, dtypes):
        _, _, m, _, n = matmul_dims(args, shapes[0], shapes[1])
        _same_dtype(("A", "B"), dtypes[:2])
        _numeric("A", dtypes[0])
        if len(shapes) == 3:
            if schema.prod(shapes[2]) != m * n:
                raise errors.ShapeError(f"the third input {tuple(shapes[2])} must hold M*N = {m}*{n} elements to"
                                        f" give Y its shape")
            return [tuple(shapes[2])], [dtypes[0]]
        return [(m, n)], [dtypes[0]]

    @staticmethod
    def reference(A, B, *shape_like, axis_a=1, axis_b=1, trans_a=False, trans_b=False):
        axis_a %= A.ndim
        axis_b %= B.ndim
        a = A.astype(np.float64).reshape(int(np.prod(A.shape[:axis_a])), -1)
        b = B.astype(np.float64).reshape(int(np.prod(B.shape[:axis_b])), -1)
        y = (a.T if trans_a else a) @ (b.T if trans_b else b)
        if shape_like:
            y = y.reshape(shape_like[0].shape)
        return (y.astype(A.dtype),)

    def bind(self, inputs, outputs):
        a, b = inputs[0], inputs[1]
        a2, b2, m, _, n = matmul_dims(self.args, a.shape, b.shape)
        offsets = self.ctx.from_host(np.zeros((2, 1), np.int64))
        return functools.partial(self.kernel, a.reshape(a2), b.reshape(b2), outputs[0].reshape(m, n),
                                 bool(self.args["trans_a"]), bool(self.args["trans_b"]), offsets)


# ------------------------------------------------------------------------ BatchMatMul


def batch_matmul_cpu(a, b, y, trans_a, trans_b, offsets):
    """y (..., M, N) = op(a) · op(b) over the batch dims, which broadcast NumPy-style (all three
    arrays have the same rank; a and b may have 1s where y has batches).  ``offsets`` (see
    batch_offsets) is the CUDA kernel's batch addressing; NumPy broadcasts by itself."""
    threads.batch_matmul(a.swapaxes(-1, -2) if trans_a else a, b.swapaxes(-1, -2) if trans_b else b, y)


class BatchPlan:
    """How BatchMatMul sees its inputs: A and B as (batch..., rows, cols) views of equal rank
    (1-D operands promoted, batch dims left-padded with 1s), the flags, M, K, N, the broadcast
    batch shape and Y's shape."""

    __slots__ = ("a_view", "b_view", "trans_a", "trans_b", "m", "k", "n", "batch", "y_shape")

    def __init__(self, args, a_shape, b_shape):
        a_shape, b_shape = tuple(a_shape), tuple(b_shape)
        broadcast = bool(args["broadcast"])
        trans_a, trans_b = bool(args["trans_a"]), bool(args["trans_b"])
        if not broadcast and (len(a_shape) < 2 or len(b_shape) < 2 or a_shape[:-2] != b_shape[:-2]):
            raise errors.ShapeError(
                f"with broadcast=0 A {a_shape} and B {b_shape} must both have rank >= 2 and the same batch dims"
                f" (all but the last two); set broadcast=1 for NumPy-style broadcasting and 1-D operands")
        if not a_shape or not b_shape:
            raise errors.ShapeError(f"A {a_shape} and B {b_shape} must have rank >= 1")
        if len(a_shape) == 1:  # a vector is a single row; a transpose flag means nothing for it
            a_view, trans_a = (1,) + a_shape, False
        else:
            a_view = a_shape
        if len(b_shape) == 1:  # a single column
            b_view, trans_b = b_shape + (1,), False
        else:
            b_view = b_shape
        m, k = (a_view[-1], a_view[-2]) if trans_a else (a_view[-2], a_view[-1])
        k_b, n = (b_view[-1], b_view[-2]) if trans_b else (b_view[-2], b_view[-1])
        if k != k_b:
            raise errors.ShapeError(
                f"A {a_shape}{' (trans_a)' if trans_a else ''} gives (M, K) = ({m}, {k}) but B {b_shape}"
                f"{' (trans_b)' if trans_b else ''} gives (K, N) = ({k_b}, {n}); the K dims must match")
        try:
            batch = tuple(np.broadcast_shapes(a_view[:-2], b_view[:-2]))
        except ValueError:
            raise errors.ShapeError(f"the batch dims of A {a_shape} and B {b_shape} do not broadcast") from None
        rank = len(batch) + 2
        self.a_view = (1,) * (rank - len(a_view)) + a_view
        self.b_view = (1,) * (rank - len(b_view)) + b_view
        self.trans_a, self.trans_b, self.m, self.k, self.n, self.batch = trans_a, trans_b, m, k, n, batch
        if len(a_shape) == 1 and len(b_shape) == 1:
            self.y_shape = (1,)  # Caffe2: a vector-vector product is a 1-element tensor
        else:
            self.y_shape = batch + ((m,) if len(a_shape) > 1 else ()) + ((n,) if len(b_shape) > 1 else ())

    @property
    def y_view(self):
        return self.batch + (self.m, self.n)


def batch_matmul_gradient(op, g_output):
    """Caffe2's GetBatchMatMulGradient for broadcast=0 (two BatchMatMul ops with transpose
    flags); with broadcast=1, where Caffe2 had no gradient, one BatchMatMulGradient op that
    also sums over the broadcast batch dims."""
    given = {a.name: a.i for a in op.arg}
    trans_a, trans_b = bool(given.get("trans_a", 0)), bool(given.get("trans_b", 0))
    ctx = GradientContext(op, g_output)
    if given.get("broadcast", 0):
        ctx.add("BatchMatMulGradient", [I(0), I(1), GO(0)], [GI(0), GI(1)])
        return ctx.result()
    add = functools.partial(ctx.add, "BatchMatMul", copy_arguments=False)
    if trans_a and trans_b:  # dA = B'G', dB = G'A'
        add([I(1), GO(0)], [GI(0)], trans_a=1, trans_b=1)
        add([GO(0), I(0)], [GI(1)], trans_a=1, trans_b=1)
    elif trans_a:  # dA = B G', dB = A G
        add([I(1), GO(0)], [GI(0)], trans_b=1)
        add([I(0), GO(0)], [GI(1)])
    elif trans_b:  # dA = G B, dB = G'A
        add([GO(0), I(1)], [GI(0)])
        add([GO(0), I(0)], [GI(1)], trans_a=1)
    else:  # dA = G B', dB = A'G
        add([GO(0), I(1)], [GI(0)], trans_b=1)
        add([I(0), GO(0)], [GI(1)], trans_a=1)
    return ctx.result()


def _np_batch_matmul(A, B, trans_a, trans_b):
    """float64 NumPy product with Caffe2's BatchMatMul shape rules (reference helper)."""
    a = A.astype(np.float64)
    b = B.astype(np.float64)
    if a.ndim > 1 and trans_a:
        a = np.swapaxes(a, -1, -2)
    if b.ndim > 1 and trans_b:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b).reshape(-1) if a.ndim == b.ndim == 1 else np.matmul(a, b)


@register_op
class BatchMatMul(Operator):
    """Y[i] = op(A[i]) · op(B[i]) for every batch index i: A (..., M, K), B (..., K, N) give
    Y (..., M, N); ``trans_a`` / ``trans_b`` transpose the last two dims first (default 0).

    ``broadcast=0`` (default): A and B have the same rank >= 2 and the same batch dims.
    ``broadcast=1``: numpy.matmul rules — batch dims broadcast, a 1-D A is a row (its dim is
    dropped from Y), a 1-D B a column; two vectors give a 1-element Y (Caffe2).  Gradient:
    BatchMatMul ops as in Caffe2, and with broadcast=1 (where Caffe2 had none) a
    BatchMatMulGradient op.
    """

    inputs, outputs = ("A", "B"), ("Y",)
    args = {"trans_a": False, "trans_b": False, "broadcast": False}
    ignored_args = ("use_scratch",)
    cpu = staticmethod(batch_matmul_cpu)
    gradient = staticmethod(batch_matmul_gradient)

    @staticmethod
    def infer(args, shapes, dtypes):
        plan = BatchPlan(args, shapes[0], shapes[1])
        _same_dtype(("A", "B"), dtypes)
        _numeric("A", dtypes[0])
        return [plan.y_shape], [dtypes[0]]

    @staticmethod
    def reference(A, B, trans_a=False, trans_b=False, broadcast=False):
        return (_np_batch_matmul(A, B, trans_a, trans_b).astype(A.dtype),)

    def bind(self, inputs, outputs):
        a, b = inputs
        plan = BatchPlan(self.args, a.shape, b.shape)
        offsets = self.ctx.from_host(batch_offsets(plan.batch, plan.a_view, plan.b_view))
        return functools.partial(self.kernel, a.reshape(plan.a_view), b.reshape(plan.b_view),
                                 outputs[0].reshape(plan.y_view), plan.trans_a, plan.trans_b, offsets)


def batch_matmul_grad_cpu(x1, x2, t1, t2, offsets, full, reduce, out, dims, flags):
    """One gradient of BatchMatMulGradient: full (batch..., R, C) = op(x1) · op(x2), then, when
    ``reduce``, out (flat) = full summed over the broadcast batch dims (``dims``/``flags``
    as in reduction.reduce_plan); without ``reduce`` full is out's own view."""
    batch_matmul_cpu(x1, x2, full, t1, t2, offsets)
    if reduce:
        reduction.reduce_cpu(full.reshape(full.size), out, dims, flags, reduction.MODE_SUM, 1.0)


@register_op
class BatchMatMulGradient(Operator):
    """dA, dB of BatchMatMul with ``broadcast=1``: dA = dY · op(B)ᵀ (or its transpose with
    trans_a) summed over the batch dims that A broadcast along, dB likewise; shapes of A and B.

    (nbcaffe addition: Caffe2 had no gradient for broadcast=1; broadcast=0 uses BatchMatMul ops.)
    """

    inputs, outputs = ("A", "B", "dY"), ("dA", "dB")
    args = {"trans_a": False, "trans_b": False, "broadcast": True}
    ignored_args = ("use_scratch",)
    gradient = None
    cpu = staticmethod(batch_matmul_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        plan = BatchPlan({**args, "broadcast": True}, shapes[0], shapes[1])
        if tuple(shapes[2]) != plan.y_shape:
            raise errors.ShapeError(f"dY {tuple(shapes[2])} does not match BatchMatMul's output {plan.y_shape}")
        _same_dtype(("A", "B", "dY"), dtypes)
        return [tuple(shapes[0]), tuple(shapes[1])], [dtypes[0], dtypes[1]]

    @staticmethod
    def reference(A, B, dY, trans_a=False, trans_b=False, broadcast=True):
        a = A.astype(np.float64)
        b = B.astype(np.float64)
        a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a  # row vector
        b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b  # column vector
        ta, tb = trans_a and a.ndim > 1, trans_b and b.ndim > 1
        opa = np.swapaxes(a2, -1, -2) if ta else a2
        opb = np.swapaxes(b2, -1, -2) if tb else b2
        y_full = np.broadcast_shapes(opa.shape[:-2], opb.shape[:-2]) + (opa.shape[-2], opb.shape[-1])
        g = dY.astype(np.float64).reshape(y_full)
        d_opa = g @ np.swapaxes(opb, -1, -2)
        d_opb = np.swapaxes(opa, -1, -2) @ g
        da = np.swapaxes(d_opa, -1, -2) if ta else d_opa
        db = np.swapaxes(d_opb, -1, -2) if tb else d_opb

        def unbroadcast(grad, shape):
            lead = grad.ndim - len(shape)
            grad = grad.sum(axis=tuple(range(lead)))
            axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
            return grad.sum(axis=axes, keepdims=True)

        return (unbroadcast(da, a2.shape).reshape(A.shape).astype(A.dtype),
                unbroadcast(db, b2.shape).reshape(B.shape).astype(B.dtype))

    def bind(self, inputs, outputs):
        a, b, dy = inputs
        plan = BatchPlan({**self.args, "broadcast": True}, a.shape, b.shape)
        av, bv, g = a.reshape(plan.a_view), b.reshape(plan.b_view), dy.reshape(plan.y_view)
        ta, tb = plan.trans_a, plan.trans_b
        # (x1, t1, x2, t2) with op(x1)·op(x2) = the gradient of A (resp. B) over the full batch
        da_terms = (bv, ta and tb, g, True) if ta else (g, False, bv, not tb)
        db_terms = (g, True, av, ta) if tb else (av, not ta, g, False)
        calls = []
        for (x1, t1, x2, t2), view, out in ((da_terms, plan.a_view, outputs[0]),
                                            (db_terms, plan.b_view, outputs[1])):
            full_shape = plan.batch + view[-2:]
            out_flat = out.reshape(out.size)
            if full_shape == tuple(view):
                full, reduce = out.reshape(view), False
                dims = flags = self.ctx.from_host(np.zeros(1, np.int64))
            else:
                full, reduce = self.ctx.empty(full_shape, out.dtype), True
                axes = [i for i in range(len(full_shape)) if view[i] == 1 and full_shape[i] != 1]
                dims, flags = (self.ctx.from_host(v) for v in reduction.reduce_plan(full_shape, axes))
            offsets = self.ctx.from_host(batch_offsets(plan.batch, tuple(x1.shape), tuple(x2.shape)))
            calls.append(functools.partial(self.kernel, x1, x2, t1, t2, offsets, full, reduce, out_flat, dims, flags))

        def call():
            for c in calls:
                c()

        return call


# ------------------------------------------------------------------------ ElementwiseLinear


@numba.njit(cache=True)
def elementwise_linear_cpu(x, w, b, y):
    """y (N, D) = x (N, D) * w (D) + b (D), row by row."""
    n, d = x.shape
    for i in range(n):
        xi = x[i]
        yi = y[i]
        for j in range(d):
            yi[j] = xi[j] * w[j] + b[j]


@numba.njit(cache=True)
def elementwise_linear_grad_cpu(dy, x, w, dx, dw, db):
    """dx = dy * w; dw = column sums of dy * x; db = column sums of dy (all (N, D) / (D))."""
    n, d = x.shape
    for j in range(d):
        dw[j] = 0
        db[j] = 0
    for i in range(n):
        dyi = dy[i]
        xi = x[i]
        dxi = dx[i]
        for j in range(d):
            g = dyi[j]
            dxi[j] = g * w[j]
            dw[j] += g * xi[j]
            db[j] += g


def _linear_dims(args, x_shape, w_shape, b_shape=None):
    x_shape = tuple(x_shape)
    axis = schema.canonical_axis(args["axis"], max(len(x_shape), 1), f"axis (X {x_shape})")
    n, d = schema.flatten_2d(x_shape, axis)
    for name, shape in (("w", w_shape), ("b", b_shape)):
        if shape is not None and tuple(shape) != (d,):
            raise errors.ShapeError(f"{name} {tuple(shape)} must be 1-D of D={d} elements: X {x_shape} viewed at"
                                    f" axis={axis} is ({n}, {d})")
    return n, d


@register_op
class ElementwiseLinear(Operator):
    """Y[n, d] = X[n, d] * w[d] + b[d], with X viewed as (N, D) at ``axis`` (default 1); Y has
    X's shape.  w and b are 1-D of D elements; all three share one dtype."""

    inputs, outputs = ("X", "w", "b"), ("Y",)
    args = {"axis": 1}
    cpu = staticmethod(elementwise_linear_cpu)
    gradient = simple_gradient("ElementwiseLinearGradient", [GO(0), I(0), I(1)], [GI(0), GI(1), GI(2)])

    @staticmethod
    def infer(args, shapes, dtypes):
        _linear_dims(args, shapes[0], shapes[1], shapes[2])
        _same_dtype(("X", "w", "b"), dtypes)
        _numeric("X", dtypes[0])
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(X, w, b, axis=1):
        d = int(np.prod(X.shape[axis % max(X.ndim, 1):]))
        y = X.astype(np.float64).reshape(-1, d) * w.astype(np.float64) + b.astype(np.float64)
        return (y.reshape(X.shape).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, w, b = inputs
        n, d = _linear_dims(self.args, x.shape, w.shape)
        return functools.partial(self.kernel, x.reshape(n, d), w, b, outputs[0].reshape(n, d))


@register_op
class ElementwiseLinearGradient(Operator):
    """dX = dY * w, dw = Σ_n dY * X, db = Σ_n dY, with ElementwiseLinear's (N, D) view at ``axis``;
    outputs in Caffe2's order (dX, dw, db)."""

    inputs, outputs = ("dY", "X", "w"), ("dX", "dw", "db")
    args = {"axis": 1}
    gradient = None
    cpu = staticmethod(elementwise_linear_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        _linear_dims(args, shapes[1], shapes[2])
        if tuple(shapes[0]) != tuple(shapes[1]):
            raise errors.ShapeError(f"dY {tuple(shapes[0])} must have X's shape {tuple(shapes[1])}")
        _same_dtype(("dY", "X", "w"), dtypes)
        return [tuple(shapes[1]), tuple(shapes[2]), tuple(shapes[2])], [dtypes[1], dtypes[2], dtypes[2]]

    @staticmethod
    def reference(dY, X, w, axis=1):
        d = w.size
        g = dY.astype(np.float64).reshape(-1, d)
        x = X.astype(np.float64).reshape(-1, d)
        return ((g * w).reshape(X.shape).astype(X.dtype), (g * x).sum(axis=0).astype(w.dtype),
                g.sum(axis=0).astype(w.dtype))

    def bind(self, inputs, outputs):
        dy, x, w = inputs
        n, d = _linear_dims(self.args, x.shape, w.shape)
        dx, dw, db = outputs
        return functools.partial(self.kernel, dy.reshape(n, d), x.reshape(n, d), w, dx.reshape(n, d), dw, db)
