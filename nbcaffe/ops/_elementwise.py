"""Bases for elementwise ops: the maths is a scalar function, written once.

``UnaryElementwise`` and ``BinaryElementwise`` turn a scalar function into an ``@njit`` loop
(here) and into a ``@cuda.jit`` kernel (nbcaffe/cuda/_launch.py), so an op module only states
the formula.  Binary ops support Caffe2's legacy ``broadcast=1, axis`` form and NumPy
multidirectional broadcasting; both reduce to one strided kernel (a zero stride repeats an
operand), with a flat fast path when the shapes are equal.

CPU kernels of transcendental ops (exp, log, tanh, sigmoid, ...) may also supply a NumPy
``vector`` form: NumPy's SIMD ufuncs beat a numba loop that calls libm per element from a
few dozen elements up (benchmarks/bench_ops.py: tanh 45x, exp 5x at 4096 elements), so
:class:`SizeSwitch` picks the loop for tiny tensors (lowest call overhead) and the ufuncs
above ``VECTOR_MIN_SIZE``.  The choice is made once, when the op binds its arrays.

Why the loop kernels are not ``cache=True``: they close over scalar functions defined in
other files, and numba's cache only notices edits to the file that holds the kernel, so a
cached loop could silently keep an old formula.  Each loop compiles in ~0.1 s.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.operator import Operator

# IEEE semantics for the elementwise loops: x / 0 gives inf or nan as in NumPy and Caffe2,
# instead of numba's default Python error model, which raises ZeroDivisionError.
_njit = functools.partial(numba.njit, error_model="numpy")

VECTOR_MIN_SIZE = 256  # from benchmarks: below this a numba loop's lower call cost wins

# ------------------------------------------------------------------------ CPU kernel factories


class SizeSwitch:
    """A CPU kernel with two implementations of one contract: ``loop`` (numba) for small
    tensors, ``vector`` (NumPy ufuncs) from ``min_size`` elements; ``choose(size)`` picks."""

    __slots__ = ("loop", "vector", "min_size")

    def __init__(self, loop, vector, min_size=VECTOR_MIN_SIZE):
        self.loop = loop
        self.vector = vector
        self.min_size = min_size

    def choose(self, size):
        return self.vector if size >= self.min_size else self.loop


def choose(kernel, size):
    """The concrete kernel for a tensor of ``size`` elements (identity for plain kernels)."""
    return kernel.choose(size) if isinstance(kernel, SizeSwitch) else kernel


def unary_kernel(scalar, n_params=0):
    """``kernel(x, y, *params)``: y[i] = scalar(x[i], *params) over flat arrays."""
    f = _njit(scalar)
    if n_params == 0:
        @_njit
        def kernel(x, y):
            for i in range(x.size):
                y[i] = f(x[i])
    elif n_params == 1:
        @_njit
        def kernel(x, y, p0):
            for i in range(x.size):
                y[i] = f(x[i], p0)
    elif n_params == 2:
        @_njit
        def kernel(x, y, p0, p1):
            for i in range(x.size):
                y[i] = f(x[i], p0, p1)
    else:
        raise errors.RegistryError("unary_kernel supports up to 2 scalar parameters")
    return kernel


def binary_kernels(scalar, n_params=0):
    """Two kernels for ``c = scalar(a, b, *params)``.

    ``same(a, b, c, *p)``: flat arrays of equal size.
    ``strided(a, b, c, shape, sa, sb, *p)``: c is flat C-order over ``shape``; element
    ``idx`` of c reads ``a[dot(idx, sa)]`` and ``b[dot(idx, sb)]`` (zero strides broadcast).
    """
    f = _njit(scalar)

    if n_params == 0:
        @_njit
        def same(a, b, c):
            for i in range(c.size):
                c[i] = f(a[i], b[i])

        @_njit
        def strided(a, b, c, shape, sa, sb):
            ndim = shape.size
            inner = shape[ndim - 1]
            if inner == 0 or c.size == 0:
                return
            ia_in = sa[ndim - 1]
            ib_in = sb[ndim - 1]
            index = np.zeros(ndim, np.int64)
            oa = 0
            ob = 0
            pos = 0
            for _ in range(c.size // inner):
                # NOTE: row views indexed from 0 let numba vectorise the common stride-1/0
                # inner loops (an offset index blocks vectorisation: perf-anchors finding 1).
                cr = c[pos:pos + inner]
                if ia_in == 1 and ib_in == 1:
                    ar = a[oa:oa + inner]
                    br = b[ob:ob + inner]
                    for k in range(inner):
                        cr[k] = f(ar[k], br[k])
                elif ia_in == 1 and ib_in == 0:
                    ar = a[oa:oa + inner]
                    bs = b[ob]
                    for k in range(inner):
                        cr[k] = f(ar[k], bs)
                elif ia_in == 0 and ib_in == 1:
                    as_ = a[oa]
                    br = b[ob:ob + inner]
                    for k in range(inner):
                        cr[k] = f(as_, br[k])
                else:
                    for k in range(inner):
                        cr[k] = f(a[oa + k * ia_in], b[ob + k * ib_in])
                pos += inner
                d = ndim - 2  # advance the odometer over the outer dims
                while d >= 0:
                    index[d] += 1
                    oa += sa[d]
                    ob += sb[d]
                    if index[d] < shape[d]:
                        break
                    oa -= sa[d] * shape[d]
                    ob -= sb[d] * shape[d]
                    index[d] = 0
                    d -= 1
    elif n_params == 1:
        @_njit
        def same(a, b, c, p0):
            for i in range(c.size):
                c[i] = f(a[i], b[i], p0)

        @_njit
        def strided(a, b, c, shape, sa, sb, p0):
            ndim = shape.size
            inner = shape[ndim - 1]
            if inner == 0 or c.size == 0:
                return
            ia_in = sa[ndim - 1]
            ib_in = sb[ndim - 1]
            index = np.zeros(ndim, np.int64)
            oa = 0
            ob = 0
            pos = 0
            for _ in range(c.size // inner):
                cr = c[pos:pos + inner]
                if ia_in == 1 and ib_in == 1:
                    ar = a[oa:oa + inner]
                    br = b[ob:ob + inner]
                    for k in range(inner):
                        cr[k] = f(ar[k], br[k], p0)
                elif ia_in == 1 and ib_in == 0:
                    ar = a[oa:oa + inner]
                    bs = b[ob]
                    for k in range(inner):
                        cr[k] = f(ar[k], bs, p0)
                elif ia_in == 0 and ib_in == 1:
                    as_ = a[oa]
                    br = b[ob:ob + inner]
                    for k in range(inner):
                        cr[k] = f(as_, br[k], p0)
                else:
                    for k in range(inner):
                        cr[k] = f(a[oa + k * ia_in], b[ob + k * ib_in], p0)
                pos += inner
                d = ndim - 2
                while d >= 0:
                    index[d] += 1
                    oa += sa[d]
                    ob += sb[d]
                    if index[d] < shape[d]:
                        break
                    oa -= sa[d] * shape[d]
                    ob -= sb[d] * shape[d]
                    index[d] = 0
                    d -= 1
    elif n_params == 2:
        @_njit
        def same(a, b, c, p0, p1):
            for i in range(c.size):
                c[i] = f(a[i], b[i], p0, p1)

        @_njit
        def strided(a, b, c, shape, sa, sb, p0, p1):
            ndim = shape.size
            inner = shape[ndim - 1]
            if inner == 0 or c.size == 0:
                return
            ia_in = sa[ndim - 1]
            ib_in = sb[ndim - 1]
            index = np.zeros(ndim, np.int64)
            oa = 0
            ob = 0
            pos = 0
            for _ in range(c.size // inner):
                cr = c[pos:pos + inner]
                if ia_in == 1 and ib_in == 1:
                    ar = a[oa:oa + inner]
                    br = b[ob:ob + inner]
                    for k in range(inner):
                        cr[k] = f(ar[k], br[k], p0, p1)
                elif ia_in == 1 and ib_in == 0:
                    ar = a[oa:oa + inner]
                    bs = b[ob]
                    for k in range(inner):
                        cr[k] = f(ar[k], bs, p0, p1)
                elif ia_in == 0 and ib_in == 1:
                    as_ = a[oa]
                    br = b[ob:ob + inner]
                    for k in range(inner):
                        cr[k] = f(as_, br[k], p0, p1)
                else:
                    for k in range(inner):
                        cr[k] = f(a[oa + k * ia_in], b[ob + k * ib_in], p0, p1)
                pos += inner
                d = ndim - 2
                while d >= 0:
                    index[d] += 1
                    oa += sa[d]
                    ob += sb[d]
                    if index[d] < shape[d]:
                        break
                    oa -= sa[d] * shape[d]
                    ob -= sb[d] * shape[d]
                    index[d] = 0
                    d -= 1
    else:
        raise errors.RegistryError("binary_kernels supports up to 2 scalar parameters")
    return BinaryKernels(same, strided)


class BinaryKernels:
    """The pair of kernels a binary elementwise op needs (same registry slot on every device)."""

    __slots__ = ("same", "strided")

    def __init__(self, same, strided):
        self.same = same
        self.strided = strided


# ------------------------------------------------------------------------ broadcasting plans


def contiguous_strides(shape) -> list:
    """Element strides of a C-contiguous array of ``shape``."""
    strides = [0] * len(shape)
    step = 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = step
        step *= shape[d]
    return strides


def broadcast_plan(out_shape, a_shape, b_shape):
    """Collapsed (shape, a_strides, b_strides) as int64 arrays for the strided kernels.

    Operands are right-aligned to ``out_shape``; broadcast dims get stride 0.  Dims of size 1
    in ``out_shape`` are dropped (they never move an index), and adjacent dims that are
    contiguous for both operands merge, so the inner loop is as long as possible.  After
    collapsing, the innermost stride of each operand is 0 (it repeats along the inner loop)
    or 1; the all-ones shape gives ``[1], [1], [1]``.
    """
    ndim = len(out_shape)

    def strides_for(shape):
        shape = (1,) * (ndim - len(shape)) + tuple(shape)
        full = contiguous_strides(shape)
        return [0 if shape[d] == 1 and out_shape[d] != 1 else full[d] for d in range(ndim)]

    sa, sb = strides_for(a_shape), strides_for(b_shape)
    keep = [d for d in range(ndim) if out_shape[d] != 1]
    as_array = functools.partial(np.asarray, dtype=np.int64)
    if not keep:
        return as_array([1]), as_array([1]), as_array([1])
    last = keep[-1]
    merged_d, merged_a, merged_b = [out_shape[last]], [sa[last]], [sb[last]]
    for d in reversed(keep[:-1]):
        n = out_shape[d]
        inner_n = merged_d[0]
        if sa[d] == merged_a[0] * inner_n and sb[d] == merged_b[0] * inner_n:
            merged_d[0] = n * inner_n
        else:
            merged_d.insert(0, n)
            merged_a.insert(0, sa[d])
            merged_b.insert(0, sb[d])
    return as_array(merged_d), as_array(merged_a), as_array(merged_b)


def flat(array):
    """A flat view of a C-contiguous array (works for NumPy and numba device arrays)."""
    return array.reshape(array.size if array.shape else 1)


# ------------------------------------------------------------------------ op bases


class UnaryElementwise(Operator):
    """Base of ops ``Y = f(X)`` elementwise; Y may alias X.

    Subclasses set ``scalar`` (a plain Python function of one value and the ``params``) and
    ``params`` (names of float arguments passed to ``scalar`` after the value).
    """

    inputs, outputs = ("X",), ("Y",)
    inplace = {0: 0}
    params: tuple = ()
    scalar = None
    vector = None  # optional NumPy form vector(x, y, *params) for large tensors on the CPU
    # Transcendental ops (Caffe2 registers them for float only) set this: on ints the loop
    # would store truncated garbage (Sigmoid -> 0) and the NumPy path would fail to cast.
    float_only = False

    @classmethod
    def build_cpu_kernel(cls):
        loop = unary_kernel(cls.scalar, len(cls.params))
        return SizeSwitch(loop, cls.vector) if cls.vector is not None else loop

    @classmethod
    def infer(cls, args, shapes, dtypes):
        if cls.float_only and not np.issubdtype(dtypes[0], np.floating):
            raise errors.ShapeError(
                f"{cls.__name__} needs a floating point input, got {np.dtype(dtypes[0]).name} (add a Cast op)")
        return [shapes[0]], [dtypes[0]]

    def param_values(self):
        return tuple(float(self.args[name]) for name in type(self).params)

    def bind(self, inputs, outputs):
        x = flat(inputs[0])
        return functools.partial(choose(self.kernel, x.size), x, flat(outputs[0]), *self.param_values())


class BinaryElementwise(Operator):
    """Base of ops ``C = f(A, B)`` elementwise with broadcasting; C may alias A or B.

    Without ``broadcast`` the shapes broadcast NumPy-style (equal shapes being the common
    case).  With ``broadcast=1`` Caffe2's legacy rule applies: B must match a contiguous run
    of A's dims starting at ``axis`` (default: B is a suffix of A) and C has A's shape.
    A and B must have the same dtype.
    """

    inputs, outputs = ("A", "B"), ("C",)
    inplace = {0: 0, 1: 0}
    args = {"broadcast": 0, "axis": -1, "axis_str": "", "order": "NCHW"}
    params: tuple = ()
    scalar = None
    output_dtype = None  # e.g. np.bool_ for comparisons; None = A's dtype

    @classmethod
    def build_cpu_kernel(cls):
        return binary_kernels(cls.scalar, len(cls.params))

    @classmethod
    def infer(cls, args, shapes, dtypes):
        a, b = tuple(shapes[0]), tuple(shapes[1])
        if dtypes[0] != dtypes[1]:
            raise errors.ShapeError(
                f"A is {np.dtype(dtypes[0]).name} but B is {np.dtype(dtypes[1]).name}; both inputs must have"
                f" the same dtype (add a Cast op)")
        if args["broadcast"]:
            axis = _legacy_axis(args, len(a))
            schema.legacy_broadcast_sizes(a, b, axis)
            out = a
        else:
            out = schema.numpy_broadcast(a, b)
        dtype = np.dtype(cls.output_dtype) if cls.output_dtype is not None else dtypes[0]
        return [out], [dtype]

    def param_values(self):
        return tuple(float(self.args[name]) for name in type(self).params)

    def bind(self, inputs, outputs):
        return self.bind_binary(self.kernel, inputs, outputs)

    def bind_binary(self, kernels, inputs, outputs):
        """Bind a :class:`BinaryKernels` pair: the flat kernel for equal shapes, else strided."""
        a, b = inputs
        c = outputs[0]
        params = self.param_values()
        if tuple(a.shape) == tuple(b.shape):
            return functools.partial(kernels.same, flat(a), flat(b), flat(c), *params)
        if self.args["broadcast"]:
            axis = _legacy_axis(self.args, len(a.shape))
            pre, n, post = schema.legacy_broadcast_sizes(a.shape, b.shape, axis)
            shape, sa, sb = broadcast_plan((pre, n, post), (pre, n, post), (n, 1))
        else:
            shape, sa, sb = broadcast_plan(tuple(c.shape), tuple(a.shape), tuple(b.shape))
        shape, sa, sb = self.ctx_arrays(shape, sa, sb)
        return functools.partial(kernels.strided, flat(a), flat(b), flat(c), shape, sa, sb, *params)

    def ctx_arrays(self, *arrays):
        """Small index arrays on the op's device (CUDA kernels cannot read host memory)."""
        return tuple(self.ctx.from_host(x) for x in arrays)


def apply_binary_reference(fn, A, B, broadcast=0, axis=-1, axis_str="", order="NCHW"):
    """fn(A, B) under BinaryElementwise's broadcasting rules, for NumPy references: with
    ``broadcast`` B is laid along A's dims from ``axis`` (or ``axis_str`` of ``order``)."""
    if broadcast and A.shape != B.shape:
        if axis_str:
            axis = order.index(axis_str)
        pre, n, post = schema.legacy_broadcast_sizes(A.shape, B.shape, axis)
        return np.asarray(fn(A.reshape(pre, n, post), B.reshape(1, n, 1))).reshape(A.shape)
    return np.asarray(fn(A, B))


def _legacy_axis(args, ndim) -> int:
    axis = args["axis"]
    if args["axis_str"]:
        order = args["order"]
        if args["axis_str"] not in order:
            raise errors.ShapeError(f"axis_str '{args['axis_str']}' is not a dimension of order '{order}'")
        axis = order.index(args["axis_str"])
    return axis


class UnaryGradient(Operator):
    """Base of gradient ops ``dX = f(Y_or_X, dY, *params)`` elementwise (same shapes); dX may
    alias dY.  Subclasses set ``scalar`` and ``params`` like UnaryElementwise, and may set a
    NumPy ``vector(y, dy, dx, *params)`` form for large tensors on the CPU (SizeSwitch)."""

    inputs, outputs = ("Y", "dY"), ("dX",)
    inplace = {1: 0}
    params: tuple = ()
    scalar = None
    vector = None
    gradient = None

    @classmethod
    def build_cpu_kernel(cls):
        loop = binary_kernels(cls.scalar, len(cls.params)).same
        return SizeSwitch(loop, cls.vector) if cls.vector is not None else loop

    @staticmethod
    def infer(args, shapes, dtypes):
        if tuple(shapes[0]) != tuple(shapes[1]):
            raise errors.ShapeError(f"the forward tensor {tuple(shapes[0])} and its gradient {tuple(shapes[1])}"
                                    f" must have the same shape")
        return [shapes[1]], [dtypes[1]]

    def param_values(self):
        return tuple(float(self.args[name]) for name in type(self).params)

    def bind(self, inputs, outputs):
        x = flat(inputs[0])
        return functools.partial(choose(self.kernel, x.size), x, flat(inputs[1]), flat(outputs[0]),
                                 *self.param_values())


# ------------------------------------------------------------------------ broadcast gradients


class BroadcastGradKernels:
    """The kernels of a binary op's gradient (same registry slot on every device).

    ``same(dc, c, a, b, da, db)``: flat arrays, all of C's size (nothing was broadcast).
    ``strided(dc, c, a, b, da, db, shape, sa, sb)``: dc and c are flat C-order over
    ``shape``; a and da share A's layout (strides ``sa``, 0 = broadcast), b and db share B's.
    """

    __slots__ = ("same", "strided")

    def __init__(self, same, strided):
        self.same = same
        self.strided = strided


def broadcast_gradient_kernels(grad_a, grad_b):
    """CPU kernels for ``dA = sum_to_A(grad_a(dC, C, A, B))``, ``dB = sum_to_B(grad_b(...))``.

    The scalar partials are evaluated at every position of C and summed into the position of
    the operand they came from, in one pass (no C-sized temporary, dC read once for both
    gradients).  A target smaller than C (broadcast somewhere) is zeroed and accumulated; a
    target of C's size is assigned.  When the inner (contiguous) dim repeats an operand, that
    operand's gradient is a row sum held in a float64 scalar; otherwise the inner loops run
    over row views so numba vectorises them, as in :func:`binary_kernels`.
    """
    fa = _njit(grad_a)
    fb = _njit(grad_b)

    @_njit
    def same(dc, c, a, b, da, db):
        for i in range(dc.size):
            da[i] = fa(dc[i], c[i], a[i], b[i])
            db[i] = fb(dc[i], c[i], a[i], b[i])

    # NOTE: fastmath reassoc lets the row sums (``total``) vectorise (the AveragedLoss
    # finding: several times the serial loop); NaN and inf still propagate.
    @_njit(fastmath={"reassoc"})
    def strided(dc, c, a, b, da, db, shape, sa, sb):
        reduce_a = da.size != dc.size
        reduce_b = db.size != dc.size
        if reduce_a:
            for i in range(da.size):
                da[i] = 0
        if reduce_b:
            for i in range(db.size):
                db[i] = 0
        ndim = shape.size
        inner = shape[ndim - 1]
        if inner == 0 or dc.size == 0:
            return
        ia = sa[ndim - 1]
        ib = sb[ndim - 1]
        index = np.zeros(ndim, np.int64)
        oa = 0
        ob = 0
        pos = 0
        for _ in range(dc.size // inner):
            dcr = dc[pos:pos + inner]
            cr = c[pos:pos + inner]
            if ia == 1 and ib == 1:
                ar = a[oa:oa + inner]
                br = b[ob:ob + inner]
                dar = da[oa:oa + inner]
                dbr = db[ob:ob + inner]
                if reduce_a and reduce_b:
                    for k in range(inner):
                        dar[k] += fa(dcr[k], cr[k], ar[k], br[k])
                        dbr[k] += fb(dcr[k], cr[k], ar[k], br[k])
                elif reduce_a:
                    for k in range(inner):
                        dar[k] += fa(dcr[k], cr[k], ar[k], br[k])
                        dbr[k] = fb(dcr[k], cr[k], ar[k], br[k])
                else:
                    for k in range(inner):
                        dar[k] = fa(dcr[k], cr[k], ar[k], br[k])
                        dbr[k] += fb(dcr[k], cr[k], ar[k], br[k])
            elif ia == 1 and ib == 0:  # B repeats along the row: dB gets the row's sum
                ar = a[oa:oa + inner]
                dar = da[oa:oa + inner]
                bs = b[ob]
                total = 0.0
                if reduce_a:
                    for k in range(inner):
                        dar[k] += fa(dcr[k], cr[k], ar[k], bs)
                        total += fb(dcr[k], cr[k], ar[k], bs)
                else:
                    for k in range(inner):
                        dar[k] = fa(dcr[k], cr[k], ar[k], bs)
                        total += fb(dcr[k], cr[k], ar[k], bs)
                db[ob] += total
            elif ia == 0 and ib == 1:  # A repeats along the row
                as_ = a[oa]
                br = b[ob:ob + inner]
                dbr = db[ob:ob + inner]
                total = 0.0
                if reduce_b:
                    for k in range(inner):
                        total += fa(dcr[k], cr[k], as_, br[k])
                        dbr[k] += fb(dcr[k], cr[k], as_, br[k])
                else:
                    for k in range(inner):
                        total += fa(dcr[k], cr[k], as_, br[k])
                        dbr[k] = fb(dcr[k], cr[k], as_, br[k])
                da[oa] += total
            else:  # not produced by broadcast_plan; kept so any plan is computed correctly
                for k in range(inner):
                    va = fa(dcr[k], cr[k], a[oa + k * ia], b[ob + k * ib])
                    vb = fb(dcr[k], cr[k], a[oa + k * ia], b[ob + k * ib])
                    if reduce_a:
                        da[oa + k * ia] += va
                    else:
                        da[oa + k * ia] = va
                    if reduce_b:
                        db[ob + k * ib] += vb
                    else:
                        db[ob + k * ib] = vb
            pos += inner
            d = ndim - 2  # advance the odometer over the outer dims
            while d >= 0:
                index[d] += 1
                oa += sa[d]
                ob += sb[d]
                if index[d] < shape[d]:
                    break
                oa -= sa[d] * shape[d]
                ob -= sb[d] * shape[d]
                index[d] = 0
                d -= 1

    return BroadcastGradKernels(same, strided)


def sum_to_shape(x, shape):
    """NumPy: ``x`` (a broadcast result) summed down to ``shape`` (right-aligned dims)."""
    shape = tuple(shape)
    lead = x.ndim - len(shape)
    if lead:
        x = x.sum(axis=tuple(range(lead)))
    axes = tuple(d for d, n in enumerate(shape) if n == 1 and x.shape[d] != 1)
    if axes:
        x = x.sum(axis=axes, keepdims=True)
    return x.reshape(shape)


class BinaryGradient(Operator):
    """Base of the gradients of :class:`BinaryElementwise` ops: ``(dC, A, B[, C]) -> (dA, dB)``.

    dA = sum over the broadcast dims of ``grad_a(dC, C, A, B)``, dB likewise with ``grad_b``,
    so dA and dB have A's and B's shapes under either broadcast form of the forward op (the
    gradient op receives the forward op's ``broadcast``/``axis``/``axis_str``/``order``).
    Subclasses set the scalar partials ``grad_a``/``grad_b`` (plain Python over
    ``(dc, c, a, b)``) and ``numpy_partials(dc, c, a, b) -> (pa, pb)`` for the reference; an
    op whose partials read C declares it as input 3 (otherwise the kernels get dC in C's slot).
    A and B are read for their shapes and, where the partials use them, their values.
    """

    inputs, outputs = ("dC", "A", "B"), ("dA", "dB")
    args = dict(BinaryElementwise.args)
    gradient = None
    grad_a = None
    grad_b = None
    numpy_partials = None

    @classmethod
    def build_cpu_kernel(cls):
        return broadcast_gradient_kernels(cls.grad_a, cls.grad_b)

    @classmethod
    def infer(cls, args, shapes, dtypes):
        dc, a, b = (tuple(s) for s in shapes[:3])
        if args["broadcast"]:
            schema.legacy_broadcast_sizes(a, b, _legacy_axis(args, len(a)))
            out = a
        else:
            out = schema.numpy_broadcast(a, b)
        if dc != out:
            raise errors.ShapeError(f"dC {dc} must have the forward output's shape {out} (A {a}, B {b})")
        if len(shapes) > 3 and tuple(shapes[3]) != out:
            raise errors.ShapeError(f"C {tuple(shapes[3])} must have the forward output's shape {out}")
        return [a, b], [dtypes[0], dtypes[0]]

    @classmethod
    def reference(cls, dC, A, B, C=None, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        dc = dC.astype(np.float64)
        c = dc if C is None else C.astype(np.float64)
        a, b = A.astype(np.float64), B.astype(np.float64)
        if broadcast and A.shape != B.shape:
            if axis_str:
                axis = order.index(axis_str)
            pre, n, post = schema.legacy_broadcast_sizes(A.shape, B.shape, axis)
            a, b = a.reshape(pre, n, post), b.reshape(1, n, 1)
            dc, c = dc.reshape(pre, n, post), c.reshape(pre, n, post)
        with np.errstate(all="ignore"):
            pa, pb = cls.numpy_partials(dc, c, a, b)
        full = dc.shape
        da = sum_to_shape(np.broadcast_to(pa, full), a.shape).reshape(A.shape)
        db = sum_to_shape(np.broadcast_to(pb, full), b.shape).reshape(B.shape)
        return da.astype(dC.dtype), db.astype(dC.dtype)

    def bind(self, inputs, outputs):
        return self.bind_broadcast(self.kernel, inputs, outputs)

    def bind_broadcast(self, kernels, inputs, outputs):
        """Bind a :class:`BroadcastGradKernels` pair to (dC, A, B[, C]) and (dA, dB)."""
        dc, a, b = inputs[:3]
        c = inputs[3] if len(inputs) > 3 else dc
        da, db = outputs
        views = (flat(dc), flat(c), flat(a), flat(b), flat(da), flat(db))
        if a.size == dc.size and b.size == dc.size:
            return functools.partial(kernels.same, *views)
        if self.args["broadcast"]:
            pre, n, post = schema.legacy_broadcast_sizes(a.shape, b.shape, _legacy_axis(self.args, len(a.shape)))
            plan = broadcast_plan((pre, n, post), (pre, n, post), (n, 1))
        else:
            plan = broadcast_plan(tuple(dc.shape), tuple(a.shape), tuple(b.shape))
        plan = tuple(self.ctx.from_host(x) for x in plan)
        return functools.partial(kernels.strided, *views, *plan)
