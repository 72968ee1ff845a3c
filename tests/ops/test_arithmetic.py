"""Edge cases of the arithmetic family (Add, Sub, Mul, Div, Sum) and of elementwise_math (Pow,
the unary ops, Clip).

Expected values come from NumPy written here; broadcasting expectations reshape B by hand
following Caffe2's rules rather than calling the op's reference.
"""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from nbcaffe import errors
from nbcaffe.testing import check_devices, check_reference
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run, run1

BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
F32 = np.float32
# Small tensors run the numba loop; from 256 elements some CPU kernels switch to NumPy ufuncs
# (ops/_elementwise.SizeSwitch): both paths must agree, in place included.
SIZES = [(2, 3, 2), (4, 5, 16)]


def _values(shape, dtype=F32, nonzero=False):
    """Float arrays in [-4, 4]; with nonzero, |x| >= 0.5 (safe divisors)."""
    if nonzero:
        magnitude = st.floats(0.5, 4.0, width=32)
        return hnp.arrays(dtype, shape, elements=magnitude).flatmap(
            lambda m: hnp.arrays(np.bool_, shape).map(lambda neg: np.where(neg, -m, m).astype(dtype)))
    return hnp.arrays(dtype, shape, elements=st.floats(-4.0, 4.0, width=32))


@st.composite
def legacy_case(draw):
    """(A, B, axis or None, full_b_shape): B is a run of A's dims with optional leading and
    trailing 1s; ``full_b_shape`` is B reshaped so NumPy broadcasting does the same thing."""
    a_shape = draw(nst.shapes(1, 4, 1, 4))
    ndim = len(a_shape)
    start = draw(st.integers(0, ndim - 1))
    length = draw(st.integers(1, ndim - start))
    lead = draw(st.integers(0, start))
    trail = draw(st.integers(0, ndim - start - length))
    b_shape = (1,) * lead + a_shape[start:start + length] + (1,) * trail
    axis = start - lead
    if axis == ndim - len(b_shape) and draw(st.booleans()):
        axis = None  # default axis: B is a suffix of A
    full = [1] * ndim
    full[start:start + length] = a_shape[start:start + length]
    a = draw(_values(a_shape))
    b = draw(_values(b_shape, nonzero=True))
    return a, b, axis, tuple(full)


class TestBinaryBroadcast:
    @given(case=legacy_case(), op_type=st.sampled_from(sorted(BINARY)))
    def test_legacy_broadcast_axis(self, case, op_type):
        a, b, axis, full = case
        kwargs = {"broadcast": 1} if axis is None else {"broadcast": 1, "axis": axis}
        expected = BINARY[op_type](a, b.reshape(full)).astype(F32)
        check_reference(CPU_OPTION, op(op_type, ["A", "B"], ["C"], **kwargs), [a, b],
                        reference=lambda A, B: (expected,), threshold=1e-5)

    @pytest.mark.parametrize("order,a_shape,expected_axis", [("NCHW", (2, 3, 4, 5), 1), ("NHWC", (2, 4, 5, 3), 3)])
    def test_legacy_axis_str(self, order, a_shape, expected_axis):
        rng = np.random.default_rng(0)
        a = rng.standard_normal(a_shape).astype(F32)
        b = rng.standard_normal(3).astype(F32)
        full = [1, 1, 1, 1]
        full[expected_axis] = 3
        out = run1("Mul", [a, b], broadcast=1, axis_str="C", order=order)
        assert_close(out, a * b.reshape(full), dtype=F32)

    def test_legacy_axis_str_not_in_order(self):
        a, b = np.ones((2, 3, 4, 5), F32), np.ones(3, F32)
        raises(errors.ShapeError, op("Add", ["A", "B"], ["C"], broadcast=1, axis_str="X", order="NCHW"), [a, b],
               "axis_str 'X'", "NCHW")

    @pytest.mark.parametrize("b", [np.float32(2.5), np.array([2.5], F32), np.array([[2.5]], F32)],
                             ids=["0d", "1", "1x1"])
    @pytest.mark.parametrize("broadcast", [0, 1])
    @pytest.mark.parametrize("op_type", sorted(BINARY))
    def test_scalar_b(self, op_type, broadcast, b):
        a = np.arange(-6, 6, dtype=F32).reshape(3, 4)
        out = run1(op_type, [a, np.asarray(b)], broadcast=broadcast)
        assert_close(out, BINARY[op_type](a, F32(2.5)), dtype=F32)

    @given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
           op_type=st.sampled_from(sorted(BINARY)), data=st.data())
    def test_numpy_multidirectional(self, shapes, op_type, data):
        a_shape, b_shape = shapes.input_shapes
        a = data.draw(_values(a_shape))
        b = data.draw(_values(b_shape, nonzero=True))
        expected = np.asarray(BINARY[op_type](a, b), dtype=F32)
        assert expected.shape == shapes.result_shape
        check_reference(CPU_OPTION, op(op_type, ["A", "B"], ["C"]), [a, b],
                        reference=lambda A, B: (expected,), threshold=1e-5)

    def test_column_times_row(self):
        a = np.arange(3, dtype=F32).reshape(3, 1)
        b = np.arange(1, 5, dtype=F32).reshape(1, 4)
        for op_type, fn in BINARY.items():
            out = run1(op_type, [a, b])
            assert out.shape == (3, 4)
            assert_close(out, fn(a, b))

    @pytest.mark.parametrize("a_shape,b_shape,args,fragments", [
        ((2, 3), (4,), {}, ["(2, 3)", "(4,)"]),
        ((2, 3), (3, 2), {}, ["(2, 3)", "(3, 2)"]),
        ((2, 3, 4), (3,), {"broadcast": 1}, ["(2, 3, 4)", "(3,)"]),
        ((2, 3, 4), (4,), {"broadcast": 1, "axis": 1}, ["(2, 3, 4)", "(4,)"]),
        ((2, 3, 4), (3, 4), {"broadcast": 1, "axis": 2}, ["(2, 3, 4)", "(3, 4)"]),
        ((3,), (2, 3), {"broadcast": 1}, ["(3,)", "(2, 3)"]),
    ])
    @pytest.mark.parametrize("op_type", ["Add", "Div"])
    def test_bad_shapes_name_both(self, op_type, a_shape, b_shape, args, fragments):
        a, b = np.ones(a_shape, F32), np.ones(b_shape, F32)
        raises(errors.ShapeError, op(op_type, ["A", "B"], ["C"], **args), [a, b], *fragments)


class TestBinaryInPlace:
    @given(op_type=st.sampled_from(sorted(BINARY)), target=st.sampled_from(["A", "B"]),
           shape=nst.shapes(1, 3, 1, 4), data=st.data())
    def test_same_shape(self, op_type, target, shape, data):
        a = data.draw(_values(shape))
        b = data.draw(_values(shape, nonzero=True))
        out_of_place = run(op(op_type, ["A", "B"], ["C"]), [a, b])[0]
        in_place = run(op(op_type, ["A", "B"], [target]), [a, b])[0]
        assert_close(in_place, BINARY[op_type](a, b), dtype=F32)
        np.testing.assert_array_equal(in_place, out_of_place)

    @pytest.mark.parametrize("args,b_shape", [({"broadcast": 1, "axis": 1}, (3,)), ({}, (4,)), ({}, (3, 1))])
    def test_broadcast_into_a(self, args, b_shape):
        rng = np.random.default_rng(1)
        a = rng.standard_normal((2, 3, 4)).astype(F32)
        b = (rng.random(b_shape) + 0.5).astype(F32)
        full = (1, 3, 1) if args else b_shape
        for op_type, fn in BINARY.items():
            in_place = run(op(op_type, ["A", "B"], ["A"], **args), [a, b])[0]
            out_of_place = run(op(op_type, ["A", "B"], ["C"], **args), [a, b])[0]
            assert_close(in_place, fn(a, b.reshape(full)))
            np.testing.assert_array_equal(in_place, out_of_place)

    def test_in_place_on_the_broadcast_operand_is_refused(self):
        """C written to B's name although B is the smaller operand: the result cannot live in B's
        buffer (and its gradient would be ill-defined), so the op refuses with the shapes."""
        a = np.arange(6, dtype=F32).reshape(2, 3)
        b = np.array([1, 2, 3], F32)
        with pytest.raises(errors.ShapeError, match=r"in place on an input of shape \(3,\).*\(2, 3\)"):
            run(op("Sub", ["A", "B"], ["B"]), [a, b])


class TestBinaryDtypes:
    @pytest.mark.parametrize("op_type", sorted(BINARY))
    def test_float64_stays_float64(self, op_type):
        rng = np.random.default_rng(2)
        a = rng.standard_normal((3, 4))
        b = rng.random(4) + 0.5
        out = run1(op_type, [a, b])
        assert_close(out, BINARY[op_type](a, b), rtol=1e-13, atol=0, dtype=np.float64)

    @given(dtype=st.sampled_from([np.int32, np.int64]), op_type=st.sampled_from(["Add", "Sub", "Mul"]),
           data=st.data())
    def test_integer_exact(self, dtype, op_type, data):
        ints = st.integers(-1000, 1000)
        shape = data.draw(nst.shapes(1, 3, 1, 4))
        a = data.draw(hnp.arrays(dtype, shape, elements=ints))
        b = data.draw(hnp.arrays(dtype, shape[-1:], elements=ints))
        out = run1(op_type, [a, b])
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, BINARY[op_type](a, b))

    @pytest.mark.parametrize("dtype", [np.int32, np.int64])
    def test_integer_division_truncates_toward_zero(self, dtype):
        """C integer division (Caffe2): -7 / 2 == -3, unlike NumPy's floor division (-4)."""
        a = np.array([7, -7, 7, -7, 6, 0, 1], dtype)
        b = np.array([2, 2, -2, -2, 3, 5, -3], dtype)
        out = run1("Div", [a, b])
        assert out.dtype == np.dtype(dtype)
        expected = (np.abs(a) // np.abs(b)) * np.sign(a) * np.sign(b)
        np.testing.assert_array_equal(out, expected)

    @pytest.mark.parametrize("op_type", sorted(BINARY) + ["Pow"])
    @pytest.mark.parametrize("dtypes", [(np.float32, np.float64), (np.float32, np.int32), (np.int64, np.int32)])
    def test_mismatched_dtypes_raise(self, op_type, dtypes):
        a = np.ones((2, 3), dtypes[0])
        b = np.ones((2, 3), dtypes[1])
        raises(errors.ShapeError, op(op_type, ["A", "B"], ["C"]), [a, b],
               np.dtype(dtypes[0]).name, np.dtype(dtypes[1]).name)


class TestBinaryEmpty:
    @pytest.mark.parametrize("a_shape,b_shape,args,out_shape", [
        ((0, 3), (3,), {}, (0, 3)),
        ((3, 0), (3, 0), {}, (3, 0)),
        ((2, 0), (1, 0), {}, (2, 0)),
        ((0,), (1,), {}, (0,)),
        ((3, 1), (0, 1, 4), {}, (0, 3, 4)),
        ((2, 0, 3), (0, 3), {"broadcast": 1}, (2, 0, 3)),
        ((0, 3, 2), (3,), {"broadcast": 1, "axis": 1}, (0, 3, 2)),
    ])
    @pytest.mark.parametrize("op_type", sorted(BINARY))
    def test_empty(self, op_type, a_shape, b_shape, args, out_shape):
        out = run1(op_type, [np.ones(a_shape, F32), np.ones(b_shape, F32)], **args)
        assert out.shape == out_shape and out.dtype == F32


class TestSum:
    def test_in_place_on_first_input(self):
        rng = np.random.default_rng(3)
        xs = [rng.standard_normal((2, 3)).astype(F32) for _ in range(3)]
        expected = xs[0] + xs[1] + xs[2]
        for target in ["X0", "S"]:
            out = run(op("Sum", ["X0", "X1", "X2"], [target]), xs)[0]
            assert_close(out, expected, dtype=F32)

    @pytest.mark.parametrize("inputs,target", [(["X0", "X1", "X2"], "X1"), (["X0", "X1", "X2"], "X2"),
                                               (["X0", "X0"], "X0")])
    def test_in_place_only_on_input_0(self, inputs, target):
        """Caffe2's Sum schema: AllowInplace({{0, 0}}) only."""
        x = np.ones((2, 3), F32)
        raises(errors.SchemaError, op("Sum", inputs, [target]), [x] * len(inputs), "in place", f"'{target}'")

    def test_repeated_input(self):
        x = np.arange(4, dtype=F32)
        assert_close(run(op("Sum", ["X", "X", "X"], ["S"]), [x, x, x])[0], 3 * x)

    def test_single_input_is_a_copy(self):
        x = np.arange(6, dtype=np.int32).reshape(2, 3)
        out = run1("Sum", [x])
        np.testing.assert_array_equal(out, x)
        assert out.dtype == np.int32

    @pytest.mark.parametrize("other", [np.ones((3, 2), F32), np.ones((2, 3), np.float64)])
    def test_mismatch_raises(self, other):
        raises(errors.ShapeError, op("Sum", ["A", "B"], ["S"]), [np.ones((2, 3), F32), other], "input 1")


class TestPow:
    def test_argument_and_input_agree(self):
        x = np.array([0.5, 1.0, 2.0, 3.0], F32)
        by_arg = run1("Pow", [x], exponent=2.5)
        by_input = run1("Pow", [x, np.full(4, 2.5, F32)])
        assert_close(by_arg, x.astype(np.float64) ** 2.5, rtol=1e-6)
        assert_close(by_input, by_arg, rtol=1e-6)

    @pytest.mark.parametrize("shape", SIZES, ids=["loop", "vector"])
    def test_in_place_exponent_argument(self, shape):
        x = np.random.default_rng(6).uniform(0.2, 3.0, shape).astype(F32)
        out_of_place = run(op("Pow", ["X"], ["Y"], exponent=-1.5), [x])[0]
        in_place = run(op("Pow", ["X"], ["X"], exponent=-1.5), [x])[0]
        assert_close(in_place, x.astype(np.float64) ** -1.5, rtol=1e-5)
        np.testing.assert_array_equal(in_place, out_of_place)

    def test_in_place_exponent_input(self):
        x = np.array([[0.5, 1.5], [2.0, 4.0]], F32)
        e = np.array([2.0, 0.5], F32)
        assert_close(run(op("Pow", ["X", "E"], ["X"]), [x, e])[0], x ** e, rtol=1e-6)

    @pytest.mark.parametrize("args,e,full", [({"broadcast": 1, "axis": 0}, np.array([1.0, 2.0], F32), (2, 1)),
                                             ({}, np.array([[1.0], [3.0]], F32), (2, 1)),
                                             ({"broadcast": 1}, np.array(2.0, F32), ())])
    def test_broadcast_exponent(self, args, e, full):
        x = np.array([[0.5, 1.5, 2.0], [2.0, 3.0, 1.1]], F32)
        out = run1("Pow", [x, e], **args)
        assert_close(out, x.astype(np.float64) ** e.reshape(full), rtol=1e-6)

    def test_float64(self):
        x = np.array([0.25, 2.0, 9.0])
        assert_close(run1("Pow", [x], exponent=0.5), np.sqrt(x), rtol=1e-14, dtype=np.float64)

    @pytest.mark.parametrize("inputs,args,word", [(1, {}, "neither"), (2, {"exponent": 2.0}, "both")])
    def test_exponent_twice_or_never(self, inputs, args, word):
        x = np.ones(3, F32)
        raises(errors.ArgumentError, op("Pow", ["X", "E"][:inputs], ["Y"], **args), [x, x][:inputs], word)


UNARY = {
    "Exp": (np.exp, (-3, 3)),
    "Log": (np.log, (0.1, 5)),
    "Sqrt": (np.sqrt, (0, 5)),
    "Abs": (np.abs, (-3, 3)),
    "Negative": (np.negative, (-3, 3)),
    "Sqr": (np.square, (-3, 3)),
}


class TestUnary:
    @pytest.mark.parametrize("shape", SIZES, ids=["loop", "vector"])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("op_type", sorted(UNARY))
    def test_in_place_and_dtype(self, op_type, dtype, shape):
        fn, (lo, hi) = UNARY[op_type]
        x = np.random.default_rng(4).uniform(lo, hi, shape).astype(dtype)
        expected = fn(x.astype(np.float64))
        out = run(op(op_type, ["X"], ["Y"]), [x])[0]
        in_place = run(op(op_type, ["X"], ["X"]), [x])[0]
        tol = 1e-6 if dtype == np.float32 else 1e-14
        assert_close(out, expected, rtol=tol, atol=tol, dtype=dtype)
        np.testing.assert_array_equal(in_place, out)

    @pytest.mark.parametrize("op_type", sorted(UNARY) + ["Scale", "Clip"])
    def test_empty(self, op_type):
        out = run1(op_type, [np.ones((2, 0, 3), F32)])
        assert out.shape == (2, 0, 3) and out.dtype == F32

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_scale(self, dtype):
        x = np.linspace(-2, 2, 12).reshape(3, 4).astype(dtype)
        assert_close(run(op("Scale", ["X"], ["X"], scale=-0.25), [x])[0], x * -0.25, dtype=dtype)
        assert_close(run1("Scale", [x]), x, dtype=dtype)  # default scale 1.0

    @pytest.mark.parametrize("size", [5, 300])
    @pytest.mark.parametrize("op_type", ["Exp", "Log", "Sqrt"])
    def test_transcendental_needs_floats(self, op_type, size):
        """Caffe2 registers these for float only; ints must not give truncated garbage (small
        tensors) or a NumPy casting failure (the >= 256-element path)."""
        raises(errors.ShapeError, op(op_type, ["X"], ["Y"]), [np.arange(1, size + 1, dtype=np.int32)],
               op_type, "int32", "floating point")

    def test_integer_abs_negative_sqr(self):
        x = np.array([-3, 0, 4], np.int64)
        for op_type, expected in [("Abs", [3, 0, 4]), ("Negative", [3, 0, -4]), ("Sqr", [9, 0, 16])]:
            out = run1(op_type, [x])
            assert out.dtype == np.int64
            np.testing.assert_array_equal(out, expected)


class TestClip:
    def test_bounds_nan_and_in_place(self):
        x = np.array([-5.0, -0.5, 0.0, 0.2, 0.3, 7.0, np.nan], F32)
        expected = np.array([-0.5, -0.5, 0.0, 0.2, 0.3, 0.3, np.nan], F32)
        assert_close(run(op("Clip", ["X"], ["X"], min=-0.5, max=0.3), [x])[0], expected)
        assert_close(run1("Clip", [x], min=-0.5, max=0.3), expected)

    def test_one_sided_and_unbounded(self):
        x = np.array([-1e30, -2.0, 3.0, 1e30], F32)
        assert_close(run1("Clip", [x]), x)
        assert_close(run1("Clip", [x], min=0.0), np.maximum(x, 0))
        assert_close(run1("Clip", [x], max=1.0), np.minimum(x, 1))

    def test_float64(self):
        x = np.linspace(-1, 1, 9)
        lo, hi = float(F32(-0.3)), float(F32(0.6))  # arguments travel as float32 (Argument.f)
        assert_close(run1("Clip", [x], min=-0.3, max=0.6), np.minimum(np.maximum(x, lo), hi), dtype=np.float64)

    def test_min_above_max_gives_max(self):
        """Caffe2 applies max(x, min) then min(., max): with min > max everything becomes max."""
        x = np.array([-5.0, 0.5, 1.5, 2.5, 9.0], F32)
        assert_close(run1("Clip", [x], min=2.0, max=1.0), np.full(5, 1.0, F32))
        assert_close(run(op("Clip", ["X"], ["Y"], min=2.0, max=1.0, engine="REFERENCE"), [x])[0], np.full(5, 1.0))


class TestArguments:
    @pytest.mark.parametrize("op_type,bad,good", [("Add", "axsi", "axis"), ("Mul", "broadcat", "broadcast"),
                                                  ("Scale", "scael", "scale"), ("Pow", "exponant", "exponent"),
                                                  ("Clip", "mx", "max")])
    def test_unknown_argument_suggests(self, op_type, bad, good):
        x = np.ones(3, F32)
        n = 1 if op_type in ("Scale", "Clip") else 2
        args = {bad: 1}
        if op_type == "Pow":
            n = 1
        error = raises(errors.ArgumentError, op(op_type, ["A", "B"][:n], ["C"], **args), [x] * n, bad, "Did you mean")
        assert good in str(error).split("Did you mean")[1]

    @pytest.mark.parametrize("op_type,args", [("Add", {"broadcast": "yes"}), ("Sub", {"axis": 1.5}),
                                              ("Scale", {"scale": "big"}), ("Clip", {"min": [1.0, 2.0]}),
                                              ("Mul", {"axis_str": 3})])
    def test_wrong_argument_type(self, op_type, args):
        x = np.ones(3, F32)
        n = 1 if op_type in ("Scale", "Clip") else 2
        name = next(iter(args))
        raises(errors.ArgumentError, op(op_type, ["A", "B"][:n], ["C"], **args), [x] * n, f"'{name}'")


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestArithmeticCuda:
    @pytest.mark.parametrize("a_shape,b_shape,args", [
        ((2, 3), (2, 3), {}),
        ((2, 3, 2), (3,), {"broadcast": 1, "axis": 1}),
        ((2, 3, 2), (1, 3, 1), {"broadcast": 1}),
        ((2, 3, 2), (3, 2), {"broadcast": 1}),
        ((3, 1), (1, 4), {}),
        ((2, 3), (), {}),
        ((0, 3), (3,), {}),
    ])
    @pytest.mark.parametrize("op_type", sorted(BINARY))
    def test_binary(self, dc, op_type, a_shape, b_shape, args):
        rng = np.random.default_rng(5)
        a = rng.standard_normal(a_shape).astype(F32)
        b = (rng.random(b_shape) + 0.5).astype(F32)
        check_devices(dc, op(op_type, ["A", "B"], ["C"], **args), [a, b])

    @pytest.mark.parametrize("target", ["A", "B"])
    def test_binary_in_place(self, dc, target):
        a = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]], F32)
        b = np.array([[2.0, 0.5, -1.0], [1.5, 2.0, 4.0]], F32)
        for op_type, fn in BINARY.items():
            outs = check_devices(dc, op(op_type, ["A", "B"], [target]), [a, b])
            assert_close(outs[1][0], fn(a, b))

    @pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
    @pytest.mark.filterwarnings("ignore:FeedBlob")
    def test_binary_dtypes(self, dc, dtype):
        a = np.array([[7, -7, 6], [5, 0, -9]], dtype)
        b = np.array([2, -2, 4], dtype)
        for op_type in BINARY:
            outs = check_devices(dc, op(op_type, ["A", "B"], ["C"]), [a, b], threshold=1e-12)
            assert outs[1][0].dtype == np.dtype(dtype)

    def test_sum_pow_clip_unary(self, dc):
        x = np.array([[0.5, 1.5, 2.0], [3.0, 0.25, 1.0]], F32)
        y = np.array([[1.0, -1.0, 2.0], [0.5, 0.5, -2.0]], F32)
        check_devices(dc, op("Sum", ["X", "Y", "Z"], ["X"]), [x, y, x])
        check_devices(dc, op("Sum", ["X", "Y"], ["S"]), [x, y])
        check_devices(dc, op("Pow", ["X"], ["X"], exponent=1.5), [x])
        check_devices(dc, op("Pow", ["X", "E"], ["Y"], broadcast=1), [x, np.array([2.0, 0.5, 3.0], F32)])
        check_devices(dc, op("Clip", ["Y"], ["Y"], min=-0.7, max=1.2), [y])
        check_devices(dc, op("Scale", ["Y"], ["Z"], scale=3.0), [y])
        for op_type in UNARY:
            check_devices(dc, op(op_type, ["X"], ["X"]), [x])


@settings(max_examples=3)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=3),
       op_type=st.sampled_from(["Add", "Mul"]), data=st.data())
@pytest.mark.cuda
def test_cuda_numpy_broadcast_hypothesis(shapes, op_type, data):
    from nbcaffe.testing import strategies as nst_

    dc = nst_.device_options()
    a = data.draw(_values(shapes.input_shapes[0]))
    b = data.draw(_values(shapes.input_shapes[1]))
    outs = check_devices(dc, op(op_type, ["A", "B"], ["C"]), [a, b])
    assert_close(outs[-1][0], BINARY[op_type](a, b))
