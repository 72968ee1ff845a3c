"""Edge cases of the axis reductions, ArgMax/ArgMin and Summarize.

Expected values are NumPy reductions written here (float64), Caffe2's documented examples,
and hand-built arrays for ties and NaN.  Caffe2 rules checked: ``axes`` empty = all axes,
negative axes count from the end, ``keepdims`` default 1; gradients take (dY, X, Y) and route a
max's gradient to every tied element; ReduceFront*/ReduceBack* drop ``num_reduce_dim`` leading
or trailing dims; ArgMax/ArgMin return int64 and break ties towards the smallest index;
Summarize gives [min, max, mean, sample std].
"""

from __future__ import annotations

import os

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from nbcaffe import autograd, core, errors, workspace
from nbcaffe.testing import check_devices, check_reference
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run1

F32 = np.float32
NP_REDUCERS = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min}


def run_gradient(op_def, inputs, gy, device_option=CPU_OPTION):
    """Forward op, then its gradient ops fed ``gy``; returns (forward output, dX)."""
    grad_ops, g_input = autograd.GradientRegistry.GetGradientForOp(op_def, [op_def.output[0] + "_grad"])
    with workspace.temp_workspace("_reduction_grad_"):
        for name, value in zip(op_def.input, inputs):
            workspace.FeedBlob(name, value, device_option)
        fwd = op_def.__class__()
        fwd.CopyFrom(op_def)
        fwd.device_option.CopyFrom(device_option)
        workspace.RunOperatorOnce(fwd)
        workspace.FeedBlob(op_def.output[0] + "_grad", gy, device_option)
        for grad_op in grad_ops:
            grad_op.device_option.CopyFrom(device_option)
            workspace.RunOperatorOnce(grad_op)
        return workspace.FetchBlob(op_def.output[0]), workspace.FetchBlob(g_input[0]), grad_ops


@st.composite
def reduce_case(draw, allow_empty=False):
    """(X, axes, keepdims): rank 0..4, dims 1..4 (0..3 when allow_empty), a random axes subset."""
    shape = draw(nst.shapes(0, 4, 0 if allow_empty else 1, 4))
    chosen = [d for d in range(len(shape)) if draw(st.booleans())]
    axes = [d - len(shape) if draw(st.booleans()) else d for d in chosen]  # some negative
    x = draw(hnp.arrays(F32, shape, elements=st.floats(-4, 4, width=32)))
    return x, draw(st.permutations(axes)), draw(st.booleans())


class TestAxisReductions:
    @pytest.mark.parametrize("op_type", list(NP_REDUCERS))
    @given(case=reduce_case())
    def test_matches_numpy(self, op_type, case):
        x, axes, keepdims = case
        canonical = tuple(a % x.ndim for a in axes) if axes else tuple(range(x.ndim))
        expected = NP_REDUCERS[op_type](x.astype(np.float64), axis=canonical, keepdims=keepdims)
        args = {"keepdims": int(keepdims)}
        if axes:
            args["axes"] = list(axes)
        check_reference(CPU_OPTION, op(op_type, ["X"], ["Y"], **args), [x],
                        reference=lambda X: (np.asarray(expected, F32),), threshold=1e-5)

    def test_defaults_reduce_everything_and_keep_dims(self):
        x = np.arange(24, dtype=F32).reshape(2, 3, 4)
        y = run1("ReduceSum", [x])
        assert y.shape == (1, 1, 1) and y.item() == 276.0
        assert run1("ReduceMean", [x], keepdims=0).shape == ()

    @pytest.mark.parametrize("axes,fragment", [([3], "out of range"), ([-4], "out of range"), ([1, -2], "twice")])
    def test_axes_errors(self, axes, fragment):
        raises(errors.ShapeError, op("ReduceSum", ["X"], ["Y"], axes=axes), [np.ones((2, 3, 4), F32)], fragment)

    def test_integer_inputs(self):
        x = np.array([[2 ** 60, 3, -7], [5, 2 ** 60 + 1, 1]], np.int64)
        y = run1("ReduceMax", [x], axes=[0], keepdims=0)
        assert y.dtype == np.int64 and y.tolist() == [2 ** 60, 2 ** 60 + 1, 1]
        ints = np.arange(12, dtype=np.int32).reshape(3, 4)
        s = run1("ReduceSum", [ints], axes=[1])
        assert s.dtype == np.int32 and s.ravel().tolist() == [6, 22, 38]
        raises(errors.ShapeError, op("ReduceMean", ["X"], ["Y"]), [ints], "floating point")

    def test_empty_reductions(self):
        x = np.ones((3, 0, 2), F32)
        assert_close(run1("ReduceSum", [x], axes=[1], keepdims=0), np.zeros((3, 2)))
        assert np.isnan(run1("ReduceMean", [x], axes=[1], keepdims=0)).all()
        raises(errors.ShapeError, op("ReduceMax", ["X"], ["Y"], axes=[1]), [x], "zero elements")
        assert run1("ReduceMax", [x], axes=[0]).shape == (1, 0, 2)  # empty output: nothing to take

    @pytest.mark.parametrize("op_type,np_fn", [("ReduceMax", np.max), ("ReduceMin", np.min)])
    @pytest.mark.parametrize("axes", [[1], [0], [0, 2], [2]])
    def test_nan_propagates(self, op_type, np_fn, axes):
        x = np.arange(24, dtype=F32).reshape(2, 3, 4) - 11
        x[0, 0, 0] = np.nan  # first element of its windows
        x[1, 2, 3] = np.nan  # last element
        x[1, 1, 1] = np.nan
        y = run1(op_type, [x], axes=axes)
        assert_close(y, np_fn(x, axis=tuple(axes), keepdims=True))

    @pytest.mark.parametrize("op_type,np_fn", [("ReduceMax", np.max), ("ReduceMin", np.min), ("ReduceSum", np.sum)])
    @pytest.mark.parametrize("axes", [[1], [0], [0, 2]])
    def test_both_sides_of_the_numpy_switch(self, op_type, np_fn, axes):
        """From 1024 elements max/min run NumPy's reductions (ops/reduction.REDUCE_VECTOR_MIN_SIZE):
        same values, same NaN propagation as the loop."""
        for shape in ((3, 5, 4), (8, 30, 6)):  # 60 and 1440 elements
            x = np.round(np.random.default_rng(11).standard_normal(shape) * 3).astype(F32)  # ties
            x[1, 2, 3] = np.nan
            assert_close(run1(op_type, [x], axes=axes), np_fn(x.astype(np.float64), axis=tuple(axes), keepdims=True),
                         rtol=1e-6)

    def test_max_gradient_goes_to_every_tie(self):
        x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
        y, dx, grad_ops = run_gradient(op("ReduceMax", ["X"], ["Y"], axes=[1], keepdims=0), [x], np.array([5.0, 7.0]))
        assert list(grad_ops[0].input) == ["Y_grad", "X", "Y"] and grad_ops[0].type == "ReduceMaxGradient"
        assert_close(y, [3.0, 2.0])
        assert_close(dx, [[0.0, 5.0, 5.0], [7.0, 7.0, 0.0]])
        _, dx, _ = run_gradient(op("ReduceMin", ["X"], ["Y"], axes=[0]), [x], np.array([[1.0, 2.0, 3.0]]))
        assert_close(dx, [[1.0, 0.0, 0.0], [0.0, 2.0, 3.0]])

    @pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMean"])
    @pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, 2], 0), ([], 0), ([-1], 1)])
    def test_sum_and_mean_gradients(self, op_type, axes, keepdims):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 3, 4))
        canonical = tuple(a % 3 for a in axes) if axes else (0, 1, 2)
        kept = tuple(1 if d in canonical else n for d, n in enumerate(x.shape))
        gy = rng.standard_normal(kept)
        args = {"keepdims": keepdims, **({"axes": axes} if axes else {})}
        g_in = gy if keepdims else gy.reshape([n for d, n in enumerate(x.shape) if d not in canonical])
        _, dx, _ = run_gradient(op(op_type, ["X"], ["Y"], **args), [x], g_in)
        count = np.prod([x.shape[a] for a in canonical]) if op_type == "ReduceMean" else 1
        assert_close(dx, np.broadcast_to(gy, x.shape) / count, rtol=1e-12)


class TestFrontBack:
    def test_caffe2_doc_example(self):
        x = np.array([[[4, 1, 1], [0, 6, 7], [7, 8, 6]], [[5, 7, 7], [0, 1, 6], [2, 9, 0]]], F32)
        assert_close(run1("ReduceFrontSum", [x], num_reduce_dim=2), [18, 32, 27])

    @pytest.mark.parametrize("front", [True, False])
    @pytest.mark.parametrize("kind", ["Sum", "Mean", "Max"])
    @pytest.mark.parametrize("num", [0, 1, 2, 3])
    def test_values(self, front, kind, num):
        x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(F32)
        axes = tuple(range(num)) if front else tuple(range(3 - num, 3))
        expected = {"Sum": np.sum, "Mean": np.mean, "Max": np.max}[kind](x.astype(np.float64), axis=axes)
        op_type = f"Reduce{'Front' if front else 'Back'}{kind}"
        y = check_reference(CPU_OPTION, op(op_type, ["X"], ["Y"], num_reduce_dim=num), [x],
                            reference=lambda X: (np.asarray(expected, F32),), threshold=1e-5)[0]
        assert y.shape == np.shape(expected)

    def test_num_reduce_dim_out_of_range(self):
        raises(errors.ShapeError, op("ReduceBackSum", ["X"], ["Y"], num_reduce_dim=3), [np.ones((2, 3), F32)],
               "num_reduce_dim=3", "[0, 2]")

    def test_max_gradients_reach_ties(self):
        x = np.array([[4.0, 1.0, 4.0], [2.0, 2.0, 0.0]])
        _, dx, grad_ops = run_gradient(op("ReduceBackMax", ["X"], ["Y"]), [x], np.array([1.5, -2.0]))
        assert grad_ops[0].type == "ReduceBackMaxGradient" and list(grad_ops[0].input) == ["Y_grad", "X", "Y"]
        assert_close(dx, [[1.5, 0.0, 1.5], [-2.0, -2.0, 0.0]])
        _, dx, _ = run_gradient(op("ReduceFrontMax", ["X"], ["Y"]), [x], np.array([1.0, 2.0, 3.0]))
        assert_close(dx, [[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]])

    def test_mean_gradient_inputs_and_values(self):
        x = np.random.default_rng(2).standard_normal((2, 3, 4))
        gy = np.arange(4.0)
        _, dx, grad_ops = run_gradient(op("ReduceFrontMean", ["X"], ["Y"], num_reduce_dim=2), [x], gy)
        assert grad_ops[0].type == "ReduceFrontMeanGradient" and list(grad_ops[0].input) == ["Y_grad", "X"]
        assert_close(dx, np.broadcast_to(gy / 6, x.shape))


class TestArg:
    def test_caffe2_doc_example_ties_take_the_smallest_index(self):
        x = np.array([[[4, 9, 6], [6, 6, 1], [9, 5, 4]], [[6, 7, 4], [7, 9, 1], [3, 2, 8]],
                      [[3, 4, 6], [5, 2, 7], [1, 5, 7]]], F32)
        y = run1("ArgMax", [x], axis=2, keepdims=0)
        assert y.dtype == np.int64
        assert y.tolist() == [[1, 0, 0], [1, 1, 2], [2, 2, 2]]

    @pytest.mark.parametrize("op_type,np_fn", [("ArgMax", np.argmax), ("ArgMin", np.argmin)])
    @given(data=st.data())
    def test_matches_numpy_on_ties(self, op_type, np_fn, data):
        shape = data.draw(nst.shapes(1, 3, 1, 4))
        x = data.draw(hnp.arrays(np.int32, shape, elements=st.integers(0, 2)))  # many ties
        axis = data.draw(st.integers(-len(shape), len(shape) - 1))
        keepdims = data.draw(st.booleans())
        y = run1(op_type, [x], axis=axis, keepdims=int(keepdims))
        assert y.dtype == np.int64
        assert np.array_equal(y, np_fn(x, axis=axis, keepdims=keepdims))  # NumPy: first occurrence

    @pytest.mark.parametrize("op_type,np_fn", [("ArgMax", np.argmax), ("ArgMin", np.argmin)])
    @pytest.mark.parametrize("axis", [0, 1, -1])
    def test_both_sides_of_the_numpy_switch(self, op_type, np_fn, axis):
        for shape in ((3, 5, 4), (8, 30, 6)):  # the loop below 1024 elements, NumPy from there
            x = np.round(np.random.default_rng(12).standard_normal(shape)).astype(F32)  # ties
            x[1, 2, 3] = np.nan
            x[2, 4, 1] = np.nan
            assert np.array_equal(run1(op_type, [x], axis=axis, keepdims=0), np_fn(x, axis=axis))

    def test_defaults_last_axis_keepdims(self):
        x = np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 7.0]], F32)
        assert run1("ArgMax", [x]).tolist() == [[1], [0]]
        assert run1("ArgMin", [x]).tolist() == [[0], [1]]

    def test_first_nan_wins(self):
        x = np.array([[1.0, np.nan, 3.0, np.nan], [np.nan, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]], F32)
        assert run1("ArgMax", [x], keepdims=0).tolist() == [1, 0, 3]
        assert run1("ArgMin", [x], keepdims=0).tolist() == [1, 0, 0]

    def test_errors_and_no_gradient(self):
        raises(errors.ShapeError, op("ArgMax", ["X"], ["Y"], axis=0), [np.ones((0, 3), F32)], "empty")
        raises(errors.ShapeError, op("ArgMax", ["X"], ["Y"], axis=2), [np.ones((2, 3), F32)], "axis")
        with pytest.raises(autograd.GradientError, match="ArgMax has no gradient"):
            autograd.GradientRegistry.GetGradientForOp(op("ArgMax", ["X"], ["Y"]), ["Y_grad"])


def np_summary(x):
    x = np.asarray(x, np.float64).ravel()
    return [x.min(), x.max(), x.mean(), x.std(ddof=1) if x.size > 1 else 0.0]


class TestSummarize:
    def test_values_use_the_sample_std(self):
        x = np.random.default_rng(3).standard_normal((4, 5)).astype(F32)
        y = run1("Summarize", [x])
        assert y.dtype == F32 and y.shape == (4,)
        assert_close(y, np_summary(x), rtol=1e-5, atol=1e-6)
        assert_close(run1("Summarize", [np.array([2.5], F32)]), [2.5, 2.5, 2.5, 0.0])
        assert_close(run1("Summarize", [np.array([1.0, 3.0])]), [1.0, 3.0, 2.0, np.sqrt(2.0)], dtype=np.float64)

    def test_to_file_appends_one_line_per_run(self, tmp_path):
        workspace.ResetWorkspace(str(tmp_path))
        (tmp_path / "scope#x.summary").write_text("stale line from an older run\n")
        workspace.FeedBlob("scope/x", np.array([[1.0, 2.0], [3.0, 6.0]], F32))
        net = core.Net("summ")
        net.Summarize(["scope/x"], [], to_file=1)
        workspace.CreateNet(net)
        workspace.RunNet(net.Name())
        workspace.FeedBlob("scope/x", np.array([-1.0, 1.0], F32))  # a new array: the op rebinds
        workspace.RunNet(net.Name())
        lines = (tmp_path / "scope#x.summary").read_text().splitlines()
        expected = [np_summary([1, 2, 3, 6]), np_summary([-1, 1])]
        assert len(lines) == 2  # truncated when the op first ran, then one line per run
        for line, stats in zip(lines, expected):
            assert_close([float(v) for v in line.split()], stats, rtol=1e-5)

    def test_errors(self):
        raises(errors.ShapeError, op("Summarize", ["X"], ["Y"]), [np.ones(3, np.int32)], "floating point")
        raises(errors.ShapeError, op("Summarize", ["X"], ["Y"]), [np.ones((2, 0), F32)], "empty")
        with pytest.raises(autograd.GradientError):
            autograd.GradientRegistry.GetGradientForOp(op("Summarize", ["X"], ["Y"]), ["Y_grad"])


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestReductionCuda:
    @settings(max_examples=10)
    @given(case=reduce_case(allow_empty=True), op_type=st.sampled_from(list(NP_REDUCERS)))
    def test_axis_reductions(self, case, op_type):
        x, axes, keepdims = case
        canonical = tuple(a % x.ndim for a in axes) if axes else tuple(range(x.ndim))
        if op_type in ("ReduceMax", "ReduceMin") and x.size == 0:
            return  # an error on both devices (test_empty_reductions)
        args = {"keepdims": int(keepdims), **({"axes": list(axes)} if axes else {})}
        outs = check_devices(nst.device_options(), op(op_type, ["X"], ["Y"], **args), [x], threshold=1e-5)
        if op_type == "ReduceMean":  # sum / count: an empty mean is NaN without NumPy's warning
            with np.errstate(invalid="ignore"):
                expected = x.astype(np.float64).sum(axis=canonical, keepdims=keepdims) / np.prod(
                    [x.shape[a] for a in canonical])
        else:
            expected = NP_REDUCERS[op_type](x.astype(np.float64), axis=canonical, keepdims=keepdims)
        assert_close(outs[1][0], expected, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("shape,axes", [((3, 130), [1]), ((130, 3), [0]), ((2, 70, 2), [0, 1])])
    @pytest.mark.parametrize("op_type", list(NP_REDUCERS))
    def test_block_per_output_path(self, dc, shape, axes, op_type):
        """>= ROW_THREADS terms per output (128 on a GPU) and few outputs: one block each."""
        x = np.random.default_rng(4).standard_normal(shape).astype(F32)
        x.flat[7] = 9.0  # a unique extreme for max
        outs = check_devices(dc, op(op_type, ["X"], ["Y"], axes=axes), [x], threshold=1e-5)
        assert_close(outs[1][0], NP_REDUCERS[op_type](x.astype(np.float64), axis=tuple(axes), keepdims=True),
                     rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("shape,axes", [((2, 3, 4), [1]), ((3, 130), [1])])
    def test_nan_and_int64_and_gradient(self, dc, shape, axes):
        x = np.arange(np.prod(shape), dtype=F32).reshape(shape)
        x.flat[5] = np.nan
        check_devices(dc, op("ReduceMax", ["X"], ["Y"], axes=axes), [x])
        big = (np.arange(np.prod(shape), dtype=np.int64) + 2 ** 60).reshape(shape)
        outs = check_devices(dc, op("ReduceMax", ["X"], ["Y"], axes=axes), [big])
        assert outs[1][0].ravel()[0] == big.max(axis=tuple(axes)).ravel()[0]
        xt = np.round(np.random.default_rng(5).standard_normal(shape) * 2).astype(F32)  # ties
        gy = np.random.default_rng(6).standard_normal(np.max(xt, axis=tuple(axes), keepdims=True).shape).astype(F32)
        for op_type in ("ReduceMax", "ReduceMean"):
            op_def = op(op_type, ["X"], ["Y"], axes=axes)
            cpu = run_gradient(op_def, [xt], gy, dc[0])
            gpu = run_gradient(op_def, [xt], gy, dc[1])
            assert_close(gpu[1], cpu[1], rtol=1e-6, atol=1e-7)

    @pytest.mark.parametrize("op_type", ["ReduceFrontSum", "ReduceFrontMean", "ReduceFrontMax", "ReduceBackSum",
                                         "ReduceBackMean", "ReduceBackMax"])
    def test_front_back_and_gradients(self, dc, op_type):
        x = np.round(np.random.default_rng(7).standard_normal((3, 2, 4)) * 2).astype(F32)
        op_def = op(op_type, ["X"], ["Y"], num_reduce_dim=2)
        outs = check_devices(dc, op_def, [x], threshold=1e-5)
        gy = np.random.default_rng(8).standard_normal(outs[0][0].shape).astype(F32)
        assert_close(run_gradient(op_def, [x], gy, dc[1])[1], run_gradient(op_def, [x], gy, dc[0])[1], rtol=1e-6)

    def test_arg_ops(self, dc):
        x = np.random.default_rng(9).integers(0, 3, (3, 4, 5)).astype(F32)
        x[0, 1, 2] = np.nan
        for op_type in ("ArgMax", "ArgMin"):
            for axis in (0, 1, -1):
                outs = check_devices(dc, op(op_type, ["X"], ["Y"], axis=axis), [x])
                assert outs[1][0].dtype == np.int64

    def test_summarize_device_and_host_inputs(self, dc, tmp_path):
        x = np.random.default_rng(10).standard_normal((5, 7)).astype(F32)
        outs = check_devices(dc, op("Summarize", ["X"], ["Y"]), [x], threshold=1e-5)
        assert_close(outs[1][0], np_summary(x), rtol=1e-5, atol=1e-6)
        # input_device any: a host input of a CUDA op, writing the file
        workspace.ResetWorkspace(str(tmp_path))
        workspace.FeedBlob("x", x, dc[0])
        summary = op("Summarize", ["x"], ["s"], to_file=1)
        summary.device_option.CopyFrom(dc[1])
        workspace.RunOperatorOnce(summary)
        assert_close(workspace.FetchBlob("s"), np_summary(x), rtol=1e-5, atol=1e-6)
        line = (tmp_path / "x.summary").read_text().split()
        assert_close([float(v) for v in line], np_summary(x), rtol=1e-5, atol=1e-6)
        assert os.path.exists(tmp_path / "x.summary")
