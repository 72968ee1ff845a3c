"""Edge cases of the activation family: Relu, LeakyRelu, Sigmoid, Tanh, Elu and Softmax.

Expected values are NumPy formulas written here in float64.  Softmax follows Caffe2: the
input is flattened to 2-D at ``axis`` and normalised over the whole second dimension.
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

F32 = np.float32


def float_tensors(min_dim, max_dim, bound):
    """float32 arrays of rank min_dim..max_dim (dims 1..5) with values in [-bound, bound]."""
    elements = st.floats(-bound, bound, width=32)
    return nst.shapes(min_dim, max_dim).flatmap(lambda shape: hnp.arrays(F32, shape, elements=elements))


def np_sigmoid(x):
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


# op type -> (float64 NumPy formula of x and the op's arguments, arguments to test with).
# Float arguments travel in Argument.f, a float32: test values are exact in float32.
ACTIVATIONS = {
    "Relu": (lambda x: np.maximum(x, 0.0), {}),
    "LeakyRelu": (lambda x, alpha=0.01: np.where(x >= 0, x, alpha * x), {"alpha": 0.375}),
    "Sigmoid": (np_sigmoid, {}),
    "Tanh": (np.tanh, {}),
    "Elu": (lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))), {"alpha": 0.75}),
}
# The CPU switches from a numba loop to NumPy ufuncs at 256 elements for some activations
# (ops/_elementwise.SizeSwitch); every behaviour is checked on both sides of the switch.
SIZES = {"loop": (3, 5), "vector": (6, 50)}


def expected_activation(op_type, x, **args):
    fn, _ = ACTIVATIONS[op_type]
    return fn(np.asarray(x, np.float64), **args)


def np_softmax_at_axis(x, axis):
    """Caffe2 Softmax: view x as (prod(dims[:axis]), prod(dims[axis:])), softmax each row."""
    axis = axis % x.ndim
    n = int(np.prod(x.shape[:axis]))
    rows = x.reshape(n, -1).astype(np.float64)
    rows = rows - rows.max(axis=1, keepdims=True)
    e = np.exp(rows)
    return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)


class TestElementwiseActivations:
    @given(op_type=st.sampled_from(sorted(ACTIVATIONS)), inplace=st.booleans(),
           x=float_tensors(1, 3, 30.0))
    def test_matches_numpy(self, op_type, inplace, x):
        args = ACTIVATIONS[op_type][1]
        check_reference(CPU_OPTION, op(op_type, ["X"], ["X" if inplace else "Y"], **args), [x],
                        reference=lambda X: (expected_activation(op_type, X, **args).astype(F32),), threshold=1e-5)

    @pytest.mark.parametrize("size", sorted(SIZES))
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("op_type", sorted(ACTIVATIONS))
    def test_in_place_equals_out_of_place(self, op_type, dtype, size):
        args = ACTIVATIONS[op_type][1]
        x = np.random.default_rng(0).uniform(-4, 4, SIZES[size]).astype(dtype)
        out_of_place = run(op(op_type, ["X"], ["Y"], **args), [x])[0]
        in_place = run(op(op_type, ["X"], ["X"], **args), [x])[0]
        tol = 1e-6 if dtype == np.float32 else 1e-13
        assert_close(out_of_place, expected_activation(op_type, x, **args), rtol=tol, atol=tol, dtype=dtype)
        np.testing.assert_array_equal(in_place, out_of_place)

    @pytest.mark.parametrize("size", sorted(SIZES))
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("op_type", sorted(ACTIVATIONS))
    def test_extreme_inputs_stay_finite(self, op_type, dtype, size):
        base = np.array([-1e4, -1000, -100, -20, -1e-3, 0, 1e-3, 20, 100, 1000, 1e4], dtype)
        x = np.resize(base, SIZES[size]).astype(dtype)
        args = ACTIVATIONS[op_type][1]
        with np.errstate(over="ignore"):
            out = run1(op_type, [x], **args)
        assert np.all(np.isfinite(out))
        assert_close(out, expected_activation(op_type, x, **args), rtol=1e-6, atol=1e-30, dtype=dtype)

    @pytest.mark.parametrize("size", [5, 300])
    @pytest.mark.parametrize("op_type", ["Sigmoid", "Tanh", "Elu"])
    def test_integer_input_raises(self, op_type, size):
        raises(errors.ShapeError, op(op_type, ["X"], ["Y"]), [np.arange(size, dtype=np.int64)], op_type, "int64")

    def test_relu_family_accepts_integers(self):
        x = np.array([-3, 0, 4], np.int32)
        np.testing.assert_array_equal(run1("Relu", [x]), [0, 0, 4])
        np.testing.assert_array_equal(run1("LeakyRelu", [x], alpha=0.5), [-1, 0, 4])  # -1.5 truncated

    @pytest.mark.parametrize("op_type", sorted(ACTIVATIONS))
    def test_defaults(self, op_type):
        x = np.array([-2.0, -0.5, 0.5, 2.0], F32)
        assert_close(run1(op_type, [x]), expected_activation(op_type, x), rtol=1e-6)

    @pytest.mark.parametrize("op_type", sorted(ACTIVATIONS) + ["Softmax"])
    @pytest.mark.parametrize("shape", [(0,), (0, 4), (3, 0)])
    def test_empty(self, op_type, shape):
        args = {"axis": 0} if op_type == "Softmax" and len(shape) == 1 else {}
        out = run1(op_type, [np.ones(shape, F32)], **args)
        assert out.shape == shape and out.dtype == F32


class TestSoftmax:
    @given(x=float_tensors(1, 4, 10.0), data=st.data(), inplace=st.booleans())
    def test_flattens_at_axis(self, x, data, inplace):
        axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
        expected = np_softmax_at_axis(x, axis).astype(F32)
        check_reference(CPU_OPTION, op("Softmax", ["X"], ["X" if inplace else "Y"], axis=axis), [x],
                        reference=lambda X: (expected,), threshold=1e-5)

    @pytest.mark.parametrize("size", sorted(SIZES))
    def test_4d_is_not_per_axis(self, size):
        """NCHW with the default axis=1: one distribution over C*H*W per image, not over C."""
        n = 2 if size == "loop" else 4
        x = np.random.default_rng(1).standard_normal((n, 3, 2, 2 if size == "loop" else 16)).astype(F32)
        out = run1("Softmax", [x])
        assert_close(out.reshape(n, -1).sum(axis=1), np.ones(n), rtol=1e-5)
        per_channel_sums = out.sum(axis=1)
        assert not np.allclose(per_channel_sums, 1.0)
        assert_close(out, np_softmax_at_axis(x, 1), rtol=1e-5, atol=1e-7)

    @pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -2])
    def test_4d_axes(self, axis):
        x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(F32)
        assert_close(run1("Softmax", [x], axis=axis), np_softmax_at_axis(x, axis), rtol=1e-5, atol=1e-7)

    @pytest.mark.parametrize("size", sorted(SIZES))
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_large_logits(self, dtype, size):
        rows = np.array([[1000.0, 999.0, -1000.0, 0.0], [1e4, 1e4, 1e4, 1e4], [-1e4, -1e4 + 1, -3e4, -1e4]])
        repeats = 1 if size == "loop" else 80
        x = np.tile(rows, (repeats, 1)).astype(dtype)
        out = run1("Softmax", [x])
        assert np.all(np.isfinite(out))
        assert_close(out, np_softmax_at_axis(x, 1), rtol=1e-6, atol=1e-12, dtype=dtype)
        e = np.exp(-1.0)
        assert_close(out[0, :2], [1 / (1 + e), e / (1 + e)], rtol=1e-6)

    @pytest.mark.parametrize("size", sorted(SIZES))
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_in_place(self, dtype, size):
        x = np.random.default_rng(3).standard_normal(SIZES[size]).astype(dtype)
        in_place = run(op("Softmax", ["X"], ["X"]), [x])[0]
        out_of_place = run(op("Softmax", ["X"], ["Y"]), [x])[0]
        np.testing.assert_array_equal(in_place, out_of_place)
        tol = 1e-6 if dtype == np.float32 else 1e-14
        assert_close(in_place, np_softmax_at_axis(x, 1), rtol=tol, atol=tol, dtype=dtype)

    def test_1d_needs_axis_0(self):
        x = np.array([1.0, 2.0, 3.0], F32)
        assert_close(run1("Softmax", [x], axis=0), np_softmax_at_axis(x, 0), rtol=1e-6)
        raises(errors.ShapeError, op("Softmax", ["X"], ["Y"]), [x], "axis=1")

    @pytest.mark.parametrize("axis", [4, -5])
    def test_axis_out_of_range(self, axis):
        raises(errors.ShapeError, op("Softmax", ["X"], ["Y"], axis=axis), [np.ones((2, 3, 4, 5), F32)],
               f"axis={axis}", "4-d")

    @pytest.mark.parametrize("dtype", [np.int32, np.int64])
    def test_integer_input_raises(self, dtype):
        raises(errors.ShapeError, op("Softmax", ["X"], ["Y"]), [np.ones((2, 3), dtype)], np.dtype(dtype).name)


class TestArguments:
    @pytest.mark.parametrize("op_type,bad,good", [("LeakyRelu", "alpah", "alpha"), ("Elu", "aplha", "alpha"),
                                                  ("Softmax", "axes", "axis")])
    def test_unknown_argument_suggests(self, op_type, bad, good):
        error = raises(errors.ArgumentError, op(op_type, ["X"], ["Y"], **{bad: 1}), [np.ones((2, 3), F32)],
                       f"'{bad}'", "Did you mean")
        assert good in str(error).split("Did you mean")[1]

    def test_unknown_argument_without_arguments(self):
        raises(errors.ArgumentError, op("Relu", ["X"], ["Y"], alpha=0.1), [np.ones(3, F32)], "'alpha'")

    @pytest.mark.parametrize("op_type,args", [("Softmax", {"axis": "one"}), ("Softmax", {"axis": 1.5}),
                                              ("LeakyRelu", {"alpha": "x"}), ("Elu", {"alpha": [1.0, 2.0]})])
    def test_wrong_argument_type(self, op_type, args):
        name = next(iter(args))
        raises(errors.ArgumentError, op(op_type, ["X"], ["Y"], **args), [np.ones((2, 3), F32)], f"'{name}'")


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestActivationCuda:
    @pytest.mark.parametrize("op_type", sorted(ACTIVATIONS))
    def test_elementwise_in_place(self, dc, op_type):
        x = np.array([[-1000.0, -2.0, -0.25], [0.25, 3.0, 1000.0]], F32)
        args = ACTIVATIONS[op_type][1]
        for out in ["Y", "X"]:
            outs = check_devices(dc, op(op_type, ["X"], [out], **args), [x])
            assert_close(outs[1][0], expected_activation(op_type, x, **args), rtol=1e-6)

    @pytest.mark.parametrize("axis", [0, 1, 2, -1])
    def test_softmax_axes(self, dc, axis):
        x = np.random.default_rng(4).standard_normal((2, 3, 2)).astype(F32)
        outs = check_devices(dc, op("Softmax", ["X"], ["Y"], axis=axis), [x])
        assert_close(outs[1][0], np_softmax_at_axis(x, axis), rtol=1e-5, atol=1e-7)

    def test_softmax_large_logits_in_place(self, dc):
        x = np.array([[1000.0, 999.0, -1000.0], [1e4, 1e4, 1e4]], F32)
        outs = check_devices(dc, op("Softmax", ["X"], ["X"]), [x])
        assert np.all(np.isfinite(outs[1][0]))
        assert_close(outs[1][0], np_softmax_at_axis(x, 1), rtol=1e-6, atol=1e-12)

    @pytest.mark.filterwarnings("ignore:FeedBlob")
    def test_softmax_float64_and_empty(self, dc):
        x = np.random.default_rng(5).standard_normal((3, 4))
        outs = check_devices(dc, op("Softmax", ["X"], ["Y"]), [x], threshold=1e-12)
        assert outs[1][0].dtype == np.float64
        check_devices(dc, op("Softmax", ["X"], ["Y"]), [np.ones((0, 3), F32)])


@settings(max_examples=3)
@given(x=hnp.arrays(F32, st.tuples(st.integers(1, 3), st.integers(1, 9)), elements=st.floats(-50, 50, width=32)))
@pytest.mark.cuda
def test_cuda_softmax_rows_hypothesis(x):
    """Rows longer than the simulator's 8-thread block exercise the strided row reduction."""
    outs = check_devices(nst.device_options(), op("Softmax", ["X"], ["Y"]), [x])
    assert_close(outs[-1][0], np_softmax_at_axis(x, 1), rtol=1e-5, atol=1e-7)
