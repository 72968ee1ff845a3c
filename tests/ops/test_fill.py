"""Edge cases of the fill family: shape rules, ConstantFill's dtype rule, GivenTensor*Fill,
and the random fills' statistics and seeding.

Random fills are checked on a few thousand seeded draws against bounds that hold for any
seed with overwhelming probability (five standard errors), so the tests are deterministic
without depending on particular values.
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from nbcaffe import core, errors, workspace
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.proto import caffe2_pb2
from nbcaffe.testing import check_devices, check_reference
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, op, raises, run, run1

T = caffe2_pb2.TensorProto
F32 = np.float32
N_SAMPLES = 4000


def seeded(seed, device_type=CPU):
    return DeviceOption(device_type, 0 if device_type == CUDA else None, random_seed=seed)


def check_normal(y, mean, std, n=None):
    n = n or y.size
    assert abs(float(y.mean()) - mean) < 5 * std / math.sqrt(n), (y.mean(), mean)
    assert abs(float(y.std()) / std - 1) < 5 / math.sqrt(2 * n), (y.std(), std)
    assert np.all(np.isfinite(y))


def check_uniform(y, lo, hi):
    width = hi - lo
    assert y.min() >= lo and y.max() <= hi, (y.min(), y.max(), lo, hi)
    # both ends are approached: P(no draw within 1% of an end) = 0.99**n
    assert y.min() < lo + 0.01 * width and y.max() > hi - 0.01 * width
    std = width / math.sqrt(12)
    assert abs(float(y.mean()) - (lo + hi) / 2) < 5 * std / math.sqrt(y.size)
    assert abs(float(y.std()) / std - 1) < 0.05


class TestShapeRules:
    @given(shape=nst.shapes(0, 4, 0, 4), op_type=st.sampled_from(["ConstantFill", "GaussianFill", "UniformFill"]))
    def test_shape_argument(self, shape, op_type):
        out = run1(op_type, [], shape=list(shape))
        assert out.shape == shape and out.dtype == F32

    @given(x_shape=nst.shapes(0, 3, 0, 3), extra=nst.shapes(0, 2, 1, 3),
           op_type=st.sampled_from(["ConstantFill", "GaussianFill", "UniformIntFill"]))
    def test_input_shape_plus_extra_shape(self, x_shape, extra, op_type):
        """The input's *shape* (not its values or dtype) plus extra_shape."""
        x = np.full(x_shape, 7, np.int64)
        out = run1(op_type, [x], extra_shape=list(extra))
        assert out.shape == x_shape + extra

    @pytest.mark.parametrize("dtype", [np.int32, np.int64])
    @pytest.mark.parametrize("op_type", ["ConstantFill", "UniformFill", "XavierFill"])
    def test_input_as_shape(self, dtype, op_type):
        dims = np.array([2, 3], dtype)
        assert run1(op_type, [dims], input_as_shape=1).shape == (2, 3)
        assert run1(op_type, [dims], input_as_shape=1, extra_shape=[4]).shape == (2, 3, 4)

    def test_input_as_shape_reruns_follow_new_values(self):
        net = core.Net("fill_shape_values")
        net.ConstantFill(["dims"], "Y", input_as_shape=1, value=2.0)
        workspace.FeedBlob("dims", np.array([1], np.int64))
        workspace.CreateNet(net)
        for dims in [(2, 3), (2, 3), (4,), (0, 5)]:
            workspace.FeedBlob("dims", np.array(dims, np.int64))
            workspace.RunNet("fill_shape_values")
            out = workspace.FetchBlob("Y")
            assert out.shape == dims
            assert np.all(out == 2.0)

    def test_no_shape_is_a_scalar(self):
        out = run1("ConstantFill", [])
        assert out.shape == () and out.dtype == F32 and out == 0.0

    @pytest.mark.parametrize("inputs,args,exc,fragment", [
        ([], {"input_as_shape": 1}, errors.ArgumentError, "input_as_shape"),
        ([], {"shape": [2], "extra_shape": [3]}, errors.ArgumentError, "extra_shape"),
        ([np.zeros(2, F32)], {"shape": [2]}, errors.ArgumentError, "'shape'"),
        ([np.array([2.0, 3.0], F32)], {"input_as_shape": 1}, errors.ShapeError, "float32"),
        ([np.ones((2, 2), np.int64)], {"input_as_shape": 1}, errors.ShapeError, "1-D"),
        ([], {"shape": [2, -1]}, errors.ShapeError, "negative"),
        ([np.array([2, -3], np.int64)], {"input_as_shape": 1}, errors.ShapeError, "negative"),
    ])
    @pytest.mark.parametrize("op_type", ["ConstantFill", "GaussianFill"])
    def test_shape_errors(self, op_type, inputs, args, exc, fragment):
        raises(exc, op(op_type, ["S"][:len(inputs)], ["Y"], **args), inputs, fragment)


class TestConstantFill:
    @pytest.mark.parametrize("value,dtype", [(3, np.int64), (-7, np.int64), (True, np.int64), (3.0, np.float32),
                                             (0.5, np.float32)])
    def test_dtype_follows_value_without_dtype(self, value, dtype):
        out = run1("ConstantFill", [], shape=[2, 3], value=value)
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, np.full((2, 3), value, dtype))

    def test_dtype_not_taken_from_input(self):
        out = run1("ConstantFill", [np.zeros((2, 2), np.int32)], value=1.5)
        assert out.dtype == F32 and np.all(out == 1.5)
        out = run1("ConstantFill", [np.zeros((2, 2), np.float64)], value=4)
        assert out.dtype == np.int64 and np.all(out == 4)

    @pytest.mark.parametrize("dtype,value,expected", [
        (T.INT32, 3.7, np.array([3, 3], np.int32)),
        (T.INT32, -3.7, np.array([-3, -3], np.int32)),
        (T.INT64, 2, np.array([2, 2], np.int64)),
        (T.FLOAT, 2, np.array([2.0, 2.0], F32)),
        (T.DOUBLE, 0.5, np.array([0.5, 0.5])),
        (T.BOOL, 1, np.array([True, True])),
        (T.BOOL, 0, np.array([False, False])),
        (T.UINT8, 255, np.array([255, 255], np.uint8)),
        (T.INT16, -5, np.array([-5, -5], np.int16)),
    ])
    def test_explicit_dtype(self, dtype, value, expected):
        out = run1("ConstantFill", [], shape=[2], value=value, dtype=dtype)
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)

    def test_string(self):
        out = run1("ConstantFill", [], shape=[2], value="ab", dtype=T.STRING)
        assert list(out) == [b"ab", b"ab"]

    @pytest.mark.parametrize("shape", [[0], [3, 0, 2]])
    def test_empty(self, shape):
        out = run1("ConstantFill", [], shape=shape, value=1.0)
        assert out.shape == tuple(shape)

    def test_in_a_net_run_twice(self):
        net = core.Net("const_twice")
        net.ConstantFill([], "Y", shape=[3], value=2.5)
        net.Scale("Y", "Y", scale=2.0)
        workspace.CreateNet(net)
        workspace.RunNet("const_twice", num_iter=2)
        np.testing.assert_array_equal(workspace.FetchBlob("Y"), np.full(3, 5.0, F32))


class TestGivenTensorFill:
    @pytest.mark.parametrize("op_type,values,dtype", [
        ("GivenTensorFill", [1.0, -2.5, 3.25, 4.0, 0.0, 6.5], np.float32),
        ("GivenTensorDoubleFill", [1.0, 2.5, -3.0, 4.0, 5.0, 6.0], np.float64),
        ("GivenTensorIntFill", [1, -2, 3, 4, 5, 6], np.int32),
        ("GivenTensorInt16Fill", [1, -2, 3, 4, 5, 32767], np.int16),
        ("GivenTensorInt64Fill", [1, 2 ** 40, -(2 ** 41) - 1, 4, 5, 6], np.int64),
        ("GivenTensorBoolFill", [1, 0, 2, 0, 0, 1], np.bool_),
    ])
    def test_values_and_dtype(self, op_type, values, dtype):
        out = check_reference(CPU_OPTION, op(op_type, [], ["Y"], shape=[2, 3], values=values), [],
                              reference=lambda: (np.array(values).astype(dtype).reshape(2, 3),))[0]
        assert out.dtype == np.dtype(dtype)
        by_input = run1(op_type, [np.zeros((3, 2), F32)], values=values)
        np.testing.assert_array_equal(by_input, np.array(values).astype(dtype).reshape(3, 2))

    def test_strings(self):
        out = run1("GivenTensorStringFill", [], shape=[3], values=["a", "", "héllo"])
        assert list(out) == [b"a", b"", "héllo".encode()]

    @pytest.mark.parametrize("op_type,values", [("GivenTensorFill", [1.0, 2.0]),
                                                ("GivenTensorIntFill", [1, 2, 3, 4, 5]),
                                                ("GivenTensorInt64Fill", [1] * 7),
                                                ("GivenTensorStringFill", ["a", "b"])])
    def test_values_count_mismatch(self, op_type, values):
        raises(errors.ShapeError, op(op_type, [], ["Y"], shape=[2, 3], values=values), [],
               f"holds {len(values)} elements", "(2, 3)", "needs 6")

    def test_empty(self):
        out = run1("GivenTensorFill", [], shape=[0, 3], values=[])
        assert out.shape == (0, 3) and out.dtype == F32


RANDOM_FILLS = ["GaussianFill", "UniformFill", "UniformIntFill", "XavierFill", "MSRAFill"]


class TestRandomFills:
    def test_gaussian_statistics(self):
        y = run1("GaussianFill", [], shape=[40, 100], mean=1.5, std=0.5, device_option=seeded(11))
        assert y.shape == (40, 100) and y.dtype == F32
        check_normal(y, 1.5, 0.5)

    def test_msra_statistics(self):
        shape = (20, 50, 4)  # fan_out = size / shape[1] = 80
        y = run1("MSRAFill", [], shape=list(shape), device_option=seeded(12))
        assert y.shape == shape and y.dtype == F32
        check_normal(y, 0.0, math.sqrt(2.0 / 80))

    def test_uniform_statistics(self):
        y = run1("UniformFill", [], shape=[N_SAMPLES], min=-2.0, max=3.0, device_option=seeded(13))
        assert y.dtype == F32
        check_uniform(y, -2.0, 3.0)

    def test_xavier_statistics(self):
        shape = (40, 100)  # fan_in = size / shape[0] = 100
        y = run1("XavierFill", [], shape=list(shape), device_option=seeded(14))
        assert y.shape == shape and y.dtype == F32
        s = math.sqrt(3.0 / 100)
        check_uniform(y, -s, s)

    def test_uniform_int_statistics(self):
        lo, hi = -2, 3
        y = run1("UniformIntFill", [], shape=[N_SAMPLES], min=lo, max=hi, device_option=seeded(15))
        assert y.dtype == np.int32
        assert y.min() == lo and y.max() == hi  # both ends are inclusive
        counts = np.bincount(y - lo, minlength=hi - lo + 1)
        assert counts.size == hi - lo + 1
        p = 1 / counts.size
        assert np.all(np.abs(counts - N_SAMPLES * p) < 5 * math.sqrt(N_SAMPLES * p * (1 - p))), counts

    def test_degenerate_ranges(self):
        np.testing.assert_array_equal(run1("UniformIntFill", [], shape=[50], min=4, max=4), np.full(50, 4, np.int32))
        np.testing.assert_array_equal(run1("UniformFill", [], shape=[5], min=1.5, max=1.5), np.full(5, 1.5, F32))
        np.testing.assert_array_equal(run1("GaussianFill", [], shape=[5], mean=2.0, std=0.0), np.full(5, 2.0, F32))

    @pytest.mark.parametrize("op_type", RANDOM_FILLS)
    def test_same_seed_same_draws(self, op_type):
        first = run1(op_type, [], shape=[8, 4], device_option=seeded(7))
        second = run1(op_type, [], shape=[8, 4], device_option=seeded(7))
        other = run1(op_type, [], shape=[8, 4], device_option=seeded(8))
        np.testing.assert_array_equal(first, second)
        assert not np.array_equal(first, other)

    def test_random_seed_keyword_of_create_operator(self):
        """core.CreateOperator(random_seed=...) puts the seed in the op's device_option."""
        fill = core.CreateOperator("GaussianFill", [], ["Y"], shape=[16], random_seed=123)
        workspace.RunOperatorOnce(fill)
        first = workspace.FetchBlob("Y")
        workspace.RunOperatorOnce(fill)
        np.testing.assert_array_equal(workspace.FetchBlob("Y"), first)

    @pytest.mark.parametrize("seed", [None, 5])
    @pytest.mark.parametrize("op_type", RANDOM_FILLS)
    def test_consecutive_net_runs_differ(self, op_type, seed):
        net = core.Net(f"draws_{op_type}_{seed}")
        kwargs = {} if seed is None else {"random_seed": seed}
        getattr(net, op_type)([], "Y", shape=[6, 5], **kwargs)
        workspace.CreateNet(net)
        draws = []
        for _ in range(3):
            workspace.RunNet(net)
            draws.append(workspace.FetchBlob("Y"))
        assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])

    @pytest.mark.parametrize("op_type", ["GaussianFill", "UniformFill", "XavierFill"])
    def test_seeded_reprepared_op_keeps_drawing(self, op_type):
        """Regression: an op that re-binds every run (input_as_shape, a re-fed input) restarted its
        seeded generator and repeated the same draws."""
        net = core.Net(f"redraw_{op_type}")
        getattr(net, op_type)(["dims"], "A", input_as_shape=1, random_seed=9)
        getattr(net, op_type)(["like"], "B", random_seed=9)
        workspace.FeedBlob("dims", np.array([4, 5], np.int64))
        workspace.FeedBlob("like", np.zeros((4, 5), F32))
        workspace.CreateNet(net)
        workspace.RunNet(net)
        a1, b1 = workspace.FetchBlob("A"), workspace.FetchBlob("B")
        workspace.FeedBlob("like", np.zeros((4, 5), F32))  # a new array: the op binds again
        workspace.RunNet(net)
        a2, b2 = workspace.FetchBlob("A"), workspace.FetchBlob("B")
        assert not np.array_equal(a1, a2)
        assert not np.array_equal(b1, b2)
        np.testing.assert_array_equal(a1, b1)  # same seed, same first draw

    @pytest.mark.parametrize("op_type,shape,fragment", [("XavierFill", [0, 3], "non-empty"),
                                                        ("MSRAFill", [5], "2"), ("MSRAFill", [4, 0], "non-empty")])
    def test_fan_errors(self, op_type, shape, fragment):
        raises(errors.ShapeError, op(op_type, [], ["Y"], shape=shape), [], op_type, fragment)

    @pytest.mark.parametrize("op_type", ["UniformFill", "UniformIntFill"])
    def test_min_above_max(self, op_type):
        raises(errors.ArgumentError, op(op_type, [], ["Y"], shape=[2], min=3, max=1), [], "min=3", "max=1")

    @pytest.mark.parametrize("op_type", ["GaussianFill", "UniformFill", "UniformIntFill"])
    def test_empty(self, op_type):
        out = run1(op_type, [], shape=[0, 4])
        assert out.shape == (0, 4)


class TestArguments:
    @pytest.mark.parametrize("op_type,bad,good", [("ConstantFill", "vaule", "value"), ("UniformFill", "mni", "min"),
                                                  ("GaussianFill", "stdev", "std"),
                                                  ("ConstantFill", "extra_shpe", "extra_shape"),
                                                  ("GivenTensorFill", "value", "values")])
    def test_unknown_argument_suggests(self, op_type, bad, good):
        error = raises(errors.ArgumentError, op(op_type, [], ["Y"], shape=[2], **{bad: 1.0}), [], f"'{bad}'",
                       "Did you mean")
        assert good in str(error).split("Did you mean")[1]

    @pytest.mark.parametrize("op_type,args", [("ConstantFill", {"shape": "abc"}), ("ConstantFill", {"dtype": 1.5}),
                                              ("ConstantFill", {"value": [1.0, 2.0]}),
                                              ("GaussianFill", {"std": "wide"}),
                                              ("UniformIntFill", {"min": 0.5})])
    def test_wrong_argument_type(self, op_type, args):
        full = {"shape": [2], **args}
        raises(errors.ArgumentError, op(op_type, [], ["Y"], **full), [], f"'{next(iter(args))}'")


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestFillCuda:
    @pytest.mark.parametrize("inputs,args", [
        ([], {"shape": [2, 3], "value": 1.5}),
        ([], {"shape": [3], "value": 7}),
        ([], {"shape": [2], "value": 2.5, "dtype": T.DOUBLE}),
        ([], {"shape": [2], "value": 1, "dtype": T.BOOL}),
        ([np.zeros((2, 2), F32)], {"value": 3.0, "extra_shape": [2]}),
        ([np.array([2, 1], np.int64)], {"value": -1.0, "input_as_shape": 1}),
        ([], {"shape": [0, 2], "value": 1.0}),
    ])
    def test_constant_fill(self, dc, inputs, args):
        outs = check_devices(dc, op("ConstantFill", ["S"][:len(inputs)], ["Y"], **args), inputs)
        expected = run1("ConstantFill", inputs, **args)
        np.testing.assert_array_equal(outs[1][0], expected)

    @pytest.mark.parametrize("op_type,values", [("GivenTensorFill", [1.0, -2.0, 3.5, 4.0]),
                                                ("GivenTensorIntFill", [1, -2, 3, 4]),
                                                ("GivenTensorInt64Fill", [1, 2 ** 40, 3, -4]),
                                                ("GivenTensorBoolFill", [1, 0, 0, 1])])
    def test_given_fill(self, dc, op_type, values):
        check_devices(dc, op(op_type, [], ["Y"], shape=[2, 2], values=values), [])

    def test_given_fill_count_mismatch(self, dc):
        raises(errors.ShapeError, op("GivenTensorFill", [], ["Y"], shape=[3], values=[1.0]), [], "needs 3",
               device_option=dc[1])

    def test_random_statistics(self, dc):
        n = 2000
        y = run1("GaussianFill", [], shape=[n], mean=-1.0, std=2.0, device_option=seeded(21, CUDA))
        assert y.dtype == F32
        check_normal(y, -1.0, 2.0)
        y = run1("MSRAFill", [], shape=[10, 40, 5], device_option=seeded(22, CUDA))  # fan_out 50
        check_normal(y, 0.0, math.sqrt(2.0 / 50))
        y = run1("UniformFill", [], shape=[n], min=0.5, max=1.5, device_option=seeded(23, CUDA))
        check_uniform(y, 0.5, 1.5)
        y = run1("XavierFill", [], shape=[20, 100], device_option=seeded(24, CUDA))
        s = math.sqrt(3.0 / 100)
        check_uniform(y, -s, s)
        y = run1("UniformIntFill", [], shape=[n], min=-1, max=2, device_option=seeded(25, CUDA))
        assert y.dtype == np.int32 and y.min() == -1 and y.max() == 2
        counts = np.bincount(y + 1, minlength=4)
        assert np.all(np.abs(counts - n / 4) < 5 * math.sqrt(n * 0.25 * 0.75)), counts

    @pytest.mark.parametrize("op_type", RANDOM_FILLS)
    def test_seeds_and_consecutive_runs(self, dc, op_type):
        first = run1(op_type, [], shape=[4, 3], device_option=seeded(3, CUDA))
        again = run1(op_type, [], shape=[4, 3], device_option=seeded(3, CUDA))
        other = run1(op_type, [], shape=[4, 3], device_option=seeded(4, CUDA))
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)
        net = core.Net(f"cuda_draws_{op_type}")
        net.Proto().device_option.CopyFrom(seeded(3, CUDA))
        getattr(net, op_type)([], "Y", shape=[4, 3])
        workspace.CreateNet(net)
        workspace.RunNet(net)
        a = workspace.FetchBlob("Y")
        workspace.RunNet(net)
        b = workspace.FetchBlob("Y")
        np.testing.assert_array_equal(a, first)
        assert not np.array_equal(a, b)

    def test_random_fill_shapes_from_device_input(self, dc):
        x = np.zeros((3, 2), F32)
        outs = run(op("UniformFill", ["X"], ["Y"], extra_shape=[2], min=-1.0, max=1.0), [x], device_option=dc[1])
        assert outs[0].shape == (3, 2, 2) and np.all(np.abs(outs[0]) <= 1.0)
