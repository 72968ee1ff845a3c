"""Edge cases of the array family: Concat/Split (axis vs order, add_axis, split_info, split
input, gradients with missing outputs), Transpose and the order switches, ChannelShuffle,
PadImage (every mode, NCHW/NHWC, errors), Squeeze/ExpandDims (Caffe2's dims rules), plus CPU
vs CUDA for the whole family (Slice, Gather and ResizeNearest: test_array_index.py).

Expectations are NumPy written here (or torch: F.pad, F.interpolate, F.channel_shuffle and
autograd for the gradients), never the ops' own references.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from nbcaffe import autograd, core, errors, workspace
from nbcaffe.testing import check_devices, check_gradient
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, grads_of, op, raises, run, run1, torch_grad

F32 = np.float32
RNG = np.random.default_rng(2024)


def rand(*shape, dtype=F32):
    return RNG.standard_normal(shape).astype(dtype)


def net_gradients(build, feeds, ys):
    """Run a net built by ``build`` plus its gradient ops; {blob: gradient value}."""
    net = core.Net("array_grads")
    build(net)
    grad_map = net.AddGradientOperators(ys)
    for name, value in feeds.items():
        workspace.FeedBlob(name, value)
    workspace.RunNetOnce(net)
    return {str(k): workspace.FetchBlob(str(v)) for k, v in grad_map.items()}


# ------------------------------------------------------------------------------- Concat


class TestConcat:
    @pytest.mark.parametrize("args,axis", [({}, 1), ({"order": "NCHW"}, 1), ({"order": "NHWC"}, 3),
                                           ({"axis": 0}, 0), ({"axis": -1}, 3), ({"axis": -3}, 1)])
    def test_axis_from_axis_or_order(self, args, axis):
        shapes = [[2, 3, 4, 5], [2, 3, 4, 5]]
        shapes[1][axis] = 2
        a, b = rand(*shapes[0]), rand(*shapes[1])
        y, info = run(op("Concat", ["A", "B"], ["Y", "info"], **args), [a, b])
        np.testing.assert_array_equal(y, np.concatenate([a, b], axis=axis))
        assert info.dtype == np.int32
        np.testing.assert_array_equal(info, [shapes[0][axis], shapes[1][axis]])

    @given(shape=nst.shapes(1, 3, 1, 3), n=st.integers(1, 3), data=st.data())
    def test_add_axis_stacks(self, shape, n, data):
        axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
        xs = [np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + 100 * i for i in range(n)]
        y, info = run(op("Concat", [f"X{i}" for i in range(n)], ["Y", "info"], axis=axis, add_axis=1), xs)
        np.testing.assert_array_equal(y, np.stack(xs, axis=axis))
        np.testing.assert_array_equal(info, np.ones(n))

    @given(sizes=st.lists(st.integers(0, 3), min_size=1, max_size=4), axis=st.integers(0, 2))
    def test_any_sizes_along_axis(self, sizes, axis):
        xs = []
        for i, s in enumerate(sizes):
            shape = [2, 3, 2]
            shape[axis] = s
            xs.append(np.full(shape, i, np.int64) + np.arange(np.prod(shape)).reshape(shape))
        y, info = run(op("Concat", [f"X{i}" for i in range(len(xs))], ["Y", "info"], axis=axis), xs)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
        np.testing.assert_array_equal(info, sizes)

    def test_one_output_and_one_input(self):
        x = rand(2, 3)
        np.testing.assert_array_equal(run1("Concat", [x], axis=0), x)
        np.testing.assert_array_equal(run1("Concat", [x, x], axis=0), np.vstack([x, x]))

    def test_depth_concat_alias_and_legacy_split_argument(self):
        a, b = rand(1, 2, 2, 2), rand(1, 1, 2, 2)
        y, info = run(op("DepthConcat", ["A", "B"], ["Y", "info"], order="NCHW"), [a, b])
        np.testing.assert_array_equal(y, np.concatenate([a, b], axis=1))
        # a Concat emitted by a Caffe2 Split gradient carries Split's `split` argument
        y = run1("Concat", [a, b], axis=1, split=[2, 1])
        np.testing.assert_array_equal(y, np.concatenate([a, b], axis=1))

    @pytest.mark.parametrize("args,exc,fragments", [
        ({"axis": 1, "order": "NHWC"}, errors.ArgumentError, ["'axis' or 'order'"]),
        ({"add_axis": 1}, errors.ArgumentError, ["add_axis=1 needs an explicit 'axis'"]),
        ({"order": "CHWN"}, errors.ArgumentError, ["NCHW", "CHWN"]),
        ({"axis": 3}, errors.ShapeError, ["axis=3", "3-d"]),
        ({"axis": -4}, errors.ShapeError, ["axis=-4"]),
        ({"order": "NHWC"}, errors.ShapeError, ["order=NHWC", "3-d"]),
    ])
    def test_argument_errors(self, args, exc, fragments):
        raises(exc, op("Concat", ["A", "B"], ["Y", "info"], **args), [rand(2, 3, 4), rand(2, 3, 4)], *fragments)

    def test_shape_and_dtype_errors(self):
        raises(errors.ShapeError, op("Concat", ["A", "B"], ["Y"], axis=1), [rand(2, 3), rand(3, 3)],
               "input 1 (3, 3)", "input 0 (2, 3)", "except along axis 1")
        raises(errors.ShapeError, op("Concat", ["A", "B"], ["Y"], axis=0), [rand(2, 3), rand(2, 3, 1)], "(2, 3, 1)")
        raises(errors.ShapeError, op("Concat", ["A", "B"], ["Y"], axis=0, add_axis=1), [rand(2, 3), rand(1, 3)],
               "add_axis=1")
        raises(errors.ShapeError, op("Concat", ["A", "B"], ["Y"], axis=0), [rand(2, 3), rand(2, 3, dtype=np.float64)],
               "float64", "same dtype")

    def test_shape_inference(self):
        net = core.Net("concat_infer")
        net.Concat(["A", "B"], ["Y", "info"], axis=-1)
        shapes, types = workspace.InferShapesAndTypes([net], {"A": [2, 3], "B": [2, 5]})
        assert shapes["Y"] == [2, 8] and shapes["info"] == [2]

    def test_gradient_is_split_fed_by_split_info(self):
        concat = op("Concat", ["A", "B"], ["Y", "info"], axis=1)
        ops, g_input = grads_of(concat, ["Y_grad", None])
        assert [o.type for o in ops] == ["Split"]
        assert list(ops[0].input) == ["Y_grad", "info"] and list(ops[0].output) == ["A_grad", "B_grad"]
        assert {a.name for a in ops[0].arg} == {"axis"}
        assert g_input == ["A_grad", "B_grad"]

    def test_gradient_needs_split_info(self):
        with pytest.raises(autograd.GradientError, match="split_info"):
            grads_of(op("Concat", ["A", "B"], ["Y"], axis=0), ["Y_grad"])

    def test_gradient_through_a_net_with_a_repeated_input(self):
        """Concat([X, X, W]): X's two slices of the output gradient are summed."""
        x, w, seed = rand(2, 3), rand(2, 1), rand(2, 7)
        grads = net_gradients(lambda net: net.Concat(["X", "X", "W"], ["Y", "info"], axis=1),
                              {"X": x, "W": w, "seed": seed}, {"Y": "seed"})
        assert_close(grads["X"], seed[:, :3] + seed[:, 3:6])
        assert_close(grads["W"], seed[:, 6:])

    def test_gradient_with_add_axis_and_order(self):
        for args, inputs in [({"axis": 1, "add_axis": 1}, [rand(2, 3), rand(2, 3)]),
                             ({"order": "NHWC"}, [rand(1, 2, 2, 3), rand(1, 2, 2, 1)])]:
            concat = op("Concat", ["A", "B"], ["Y", "info"], **args)
            check_gradient(CPU_OPTION, concat, inputs, [0, 1], [0])


# ------------------------------------------------------------------------------- Split


class TestSplit:
    def test_caffe2_doc_example(self):
        x = np.array([2, 2, 6, 6, 6, 0, 5, 7, 4], np.int64)
        outs = run(op("Split", ["X"], ["a", "b", "c"], split=[3, 2, 4], axis=0), [x])
        assert [o.tolist() for o in outs] == [[2, 2, 6], [6, 6], [0, 5, 7, 4]]

    @pytest.mark.parametrize("args,axis", [({}, 1), ({"order": "NHWC"}, 3), ({"axis": -2}, 2)])
    def test_equal_parts(self, args, axis):
        shape = [2, 2, 2, 2]
        shape[axis] = 6
        x = rand(*shape)
        outs = run(op("Split", ["X"], ["a", "b", "c"], **args), [x])
        for got, want in zip(outs, np.split(x, 3, axis=axis)):
            np.testing.assert_array_equal(got, want)

    @pytest.mark.parametrize("dtype", [np.int32, np.int64])
    def test_sizes_from_input(self, dtype):
        x = rand(5, 2)
        a, b = run(op("Split", ["X", "S"], ["a", "b"], axis=0), [x, np.array([4, 1], dtype)])
        np.testing.assert_array_equal(a, x[:4])
        np.testing.assert_array_equal(b, x[4:])

    def test_zero_sized_piece_and_add_axis(self):
        x = rand(3, 4)
        a, b = run(op("Split", ["X"], ["a", "b"], axis=1, split=[0, 4]), [x])
        assert a.shape == (3, 0)
        np.testing.assert_array_equal(b, x)
        rows = run(op("Split", ["X"], ["r0", "r1", "r2"], axis=0, add_axis=1), [x])
        for i, row in enumerate(rows):
            np.testing.assert_array_equal(row, x[i])

    @pytest.mark.parametrize("inputs,outputs,args,exc,fragments", [
        ([rand(2, 5)], 2, {"axis": 1}, errors.ShapeError, ["5", "divide evenly into 2"]),
        ([rand(2, 5)], 2, {"axis": 1, "split": [2, 2]}, errors.ShapeError, ["sums to 4", "size 5"]),
        ([rand(2, 5)], 2, {"axis": 1, "split": [5]}, errors.ShapeError, ["1 entries", "2 outputs"]),
        ([rand(2, 5)], 2, {"axis": 1, "split": [6, -1]}, errors.ShapeError, ["negative"]),
        ([rand(2, 5), np.array([2, 3], np.int32)], 2, {"axis": 1, "split": [2, 3]}, errors.ArgumentError,
         ["do not also give"]),
        ([rand(2, 5), np.array([2.0, 3.0], F32)], 2, {"axis": 1}, errors.ShapeError, ["1-D int", "float32"]),
        ([rand(2, 5), np.array([1, 1, 3], np.int32)], 2, {"axis": 1}, errors.ShapeError, ["3 entries"]),
        ([rand(2, 5)], 2, {"axis": 1, "add_axis": 1}, errors.ShapeError, ["(2)", "(5)"]),
        ([rand(2, 5)], 2, {"axis": 1, "order": "NCHW"}, errors.ArgumentError, ["'axis' or 'order'"]),
        ([rand(2, 5)], 2, {"axis": 2}, errors.ShapeError, ["axis=2"]),
    ])
    def test_errors(self, inputs, outputs, args, exc, fragments):
        names = ["X", "S"][:len(inputs)]
        raises(exc, op("Split", names, [f"o{i}" for i in range(outputs)], **args), inputs, *fragments)

    def test_shape_inference_unknown_with_a_split_input(self):
        net = core.Net("split_infer")
        net.Split(["X"], ["a", "b"], axis=1, split=[1, 4])
        net.Split(["X", "S"], ["c", "d"], axis=1)
        shapes, _ = workspace.InferShapesAndTypes([net], {"X": [2, 5], "S": [2]})
        assert shapes["a"] == [2, 1] and shapes["b"] == [2, 4]
        assert "c" not in shapes and "d" not in shapes

    def test_gradient_is_concat(self):
        split = op("Split", ["X"], ["a", "b"], axis=1, split=[1, 2])
        ops, g_input = grads_of(split, ["a_grad", "b_grad"])
        assert [o.type for o in ops] == ["Concat"]
        assert list(ops[0].input) == ["a_grad", "b_grad"] and list(ops[0].output) == ["X_grad", "_X_grad_dims"]
        assert {a.name for a in ops[0].arg} == {"axis"}  # `split` is not copied to the Concat
        assert g_input == ["X_grad"]

    @pytest.mark.parametrize("dtype", [F32, np.float64])
    def test_outputs_without_gradient_get_zeros(self, dtype):
        """Caffe2 left them out (wrong shape); here they are zeros of the output's dtype."""
        x, seed = rand(2, 6, dtype=dtype), rand(2, 3, dtype=dtype)
        grads = net_gradients(lambda net: net.Split(["X"], ["a", "b", "c"], axis=1, split=[2, 3, 1]),
                              {"X": x, "seed": seed}, {"b": "seed"})
        expected = np.zeros((2, 6), dtype)
        expected[:, 2:5] = seed
        assert grads["X"].dtype == dtype
        np.testing.assert_array_equal(grads["X"], expected)

    def test_split_then_concat_gradient_round_trip(self):
        """Split -> Concat back: the gradient of the input is the seed itself."""
        x, seed = rand(3, 4), rand(3, 4)

        def build(net):
            net.Split(["X"], ["a", "b"], axis=1, split=[3, 1])
            net.Concat(["b", "a"], ["Y", "info"], axis=1)

        grads = net_gradients(build, {"X": x, "seed": seed}, {"Y": "seed"})
        np.testing.assert_array_equal(grads["X"], np.concatenate([seed[:, 1:], seed[:, :1]], axis=1))


# ------------------------------------------------------------------------------- permutations


class TestTranspose:
    @given(shape=nst.shapes(0, 5, 1, 3), data=st.data())
    def test_matches_numpy(self, shape, data):
        x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        axes = data.draw(st.permutations(range(len(shape))))
        np.testing.assert_array_equal(run1("Transpose", [x], axes=list(axes)), np.transpose(x, axes))
        np.testing.assert_array_equal(run1("Transpose", [x]), x.T)

    def test_dtypes_and_empty(self):
        for dtype in [np.int32, np.int64, np.bool_, np.float64, np.uint8]:
            x = (np.arange(24) % 5).astype(dtype).reshape(2, 3, 4)
            y = run1("Transpose", [x], axes=[2, 0, 1])
            assert y.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(y, x.transpose(2, 0, 1))
        assert run1("Transpose", [np.zeros((0, 3), F32)]).shape == (3, 0)

    def test_errors(self):
        raises(errors.ArgumentError, op("Transpose", ["X"], ["Y"], axes=[0, 2]), [rand(2, 3)], "permutation")
        raises(errors.ArgumentError, op("Transpose", ["X"], ["Y"], axes=[1, -1, 0]), [rand(2, 3, 4)], "permutation")
        raises(errors.ShapeError, op("Transpose", ["X"], ["Y"], axes=[1, 0]), [rand(2, 3, 4)], "2 entries", "3-d")
        with pytest.raises(errors.SchemaError, match="in place"):
            run(op("Transpose", ["X"], ["X"]), [rand(2, 2)])

    def test_gradient_uses_the_inverse_permutation(self):
        ops, _ = grads_of(op("Transpose", ["X"], ["Y"], axes=[2, 0, 3, 1]), ["Y_grad"])
        assert ops[0].type == "Transpose" and list(ops[0].arg[0].ints) == [1, 3, 0, 2]
        x, dy = rand(2, 3, 4, 5), rand(4, 2, 5, 3)
        dx = run(ops[0], [dy])[0]
        np.testing.assert_array_equal(dx, torch_grad(lambda t: t.permute(2, 0, 3, 1), x, dy).astype(F32))


class TestOrderSwitch:
    @pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5), (1, 2, 3, 2, 2)])
    def test_both_directions(self, shape):
        x = rand(*shape)
        nhwc = run1("NCHW2NHWC", [x])
        np.testing.assert_array_equal(nhwc, np.moveaxis(x, 1, -1))
        np.testing.assert_array_equal(run1("NHWC2NCHW", [nhwc]), x)

    def test_needs_three_dims(self):
        raises(errors.ShapeError, op("NCHW2NHWC", ["X"], ["Y"]), [rand(2, 3)], "at least 3 dims")
        raises(errors.ShapeError, op("NHWC2NCHW", ["X"], ["Y"]), [rand(4)], "at least 3 dims")

    def test_gradients_are_each_other(self):
        assert grads_of(op("NCHW2NHWC", ["X"], ["Y"]), ["dY"])[0][0].type == "NHWC2NCHW"
        assert grads_of(op("NHWC2NCHW", ["X"], ["Y"]), ["dY"])[0][0].type == "NCHW2NHWC"


class TestChannelShuffle:
    @pytest.mark.parametrize("shape,group", [((2, 6, 3, 2), 2), ((2, 6, 3, 2), 3), ((1, 8, 2), 4), ((3, 4, 1, 1), 1),
                                             ((1, 6, 2, 2, 2), 3)])
    def test_nchw_matches_torch(self, shape, group):
        x = rand(*shape)
        expected = F.channel_shuffle(torch.from_numpy(x), group).numpy()
        np.testing.assert_array_equal(run1("ChannelShuffle", [x], group=group), expected)

    def test_nhwc_matches_torch(self):
        x = rand(2, 3, 2, 6)
        expected = F.channel_shuffle(torch.from_numpy(np.moveaxis(x, -1, 1).copy()), 2).numpy()
        np.testing.assert_array_equal(run1("ChannelShuffle", [x], group=2, order="NHWC"), np.moveaxis(expected, 1, -1))

    def test_explicit_permutation(self):
        """group=2 over 6 channels: output channels read input channels 0 3 1 4 2 5."""
        x = np.arange(6, dtype=F32).reshape(1, 6, 1, 1)
        np.testing.assert_array_equal(run1("ChannelShuffle", [x], group=2).reshape(-1), [0, 3, 1, 4, 2, 5])

    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_gradient_inverts(self, order):
        x = rand(2, 6, 2, 6)
        y = run1("ChannelShuffle", [x], group=3, order=order)
        np.testing.assert_array_equal(run1("ChannelShuffleGradient", [y], group=3, order=order), x)

    def test_errors(self):
        raises(errors.ShapeError, op("ChannelShuffle", ["X"], ["Y"], group=4), [rand(1, 6, 2, 2)], "6 channels",
               "group=4")
        raises(errors.ArgumentError, op("ChannelShuffle", ["X"], ["Y"], group=0), [rand(1, 6, 2, 2)], "group")
        raises(errors.ShapeError, op("ChannelShuffle", ["X"], ["Y"], group=1), [rand(6)], "at least 2 dims")


# ------------------------------------------------------------------------------- PadImage

TORCH_MODE = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


def torch_pad(x, pads, mode, value=0.0, order="NCHW"):
    t, left, b, r = pads
    img = torch.from_numpy(x if order == "NCHW" else np.moveaxis(x, -1, 1).copy()).double()
    kwargs = {"value": value} if mode == "constant" else {}
    out = F.pad(img, (left, r, t, b), mode=TORCH_MODE[mode], **kwargs).numpy()
    return out if order == "NCHW" else np.moveaxis(out, 1, -1)


class TestPadImage:
    @pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    @pytest.mark.parametrize("pads", [(1, 2, 0, 3), (2, 2, 2, 2), (0, 0, 0, 0), (3, 0, 1, 0)])
    def test_matches_torch(self, mode, order, pads):
        x = rand(2, 3, 4, 5) if order == "NCHW" else rand(2, 4, 5, 3)
        y = run1("PadImage", [x], pads=list(pads), mode=mode, order=order, value=1.5)
        assert y.dtype == F32
        assert_close(y, torch_pad(x, pads, mode, 1.5, order))

    def test_pad_argument_forms_agree(self):
        x = rand(1, 2, 3, 3)
        base = run1("PadImage", [x], pads=[1, 2, 2, 1], mode="reflect")
        np.testing.assert_array_equal(run1("PadImage", [x], pad_t=1, pad_l=2, pad_b=2, pad_r=1, mode="reflect"), base)
        np.testing.assert_array_equal(run1("PadImage", [x], pad=2, mode="edge"), torch_pad(x, (2,) * 4, "edge"))

    def test_edge_padding_larger_than_the_image(self):
        x = rand(1, 1, 2, 1)
        assert_close(run1("PadImage", [x], pads=[4, 3, 5, 2], mode="edge"), torch_pad(x, (4, 3, 5, 2), "edge"))

    def test_int_values_and_empty_batch(self):
        x = np.arange(8, dtype=np.int32).reshape(1, 2, 2, 2)
        y = run1("PadImage", [x], pad=1, value=-3.0)
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)], constant_values=-3))
        assert run1("PadImage", [np.zeros((0, 2, 3, 3), F32)], pad=1).shape == (0, 2, 5, 5)

    @pytest.mark.parametrize("args,x,exc,fragments", [
        ({"pad": 3, "mode": "reflect"}, rand(1, 1, 3, 5), errors.ShapeError, ["reflect", "(3, 3, 3, 3)", "3 x 5"]),
        ({"pads": [0, 2, 0, 0], "mode": "reflect"}, rand(1, 1, 3, 2), errors.ShapeError, ["3 x 2"]),
        ({"pad": 1, "mode": "edge"}, np.zeros((1, 1, 0, 2), F32), errors.ShapeError, ["non-empty"]),
        ({"pad": -1}, rand(1, 1, 3, 3), errors.ArgumentError, [">= 0"]),
        ({"pad": 1, "pads": [1, 1, 1, 1]}, rand(1, 1, 3, 3), errors.ArgumentError, ["pad and pads"]),
        ({"pad_t": 1, "pad_b": 1}, rand(1, 1, 3, 3), errors.ArgumentError, ["missing pad_l, pad_r"]),
        ({"pads": [1, 1]}, rand(1, 1, 3, 3), errors.ArgumentError, ["[top, left, bottom, right]"]),
        ({"pad": 1, "mode": "wrap"}, rand(1, 1, 3, 3), errors.ArgumentError, ["constant, reflect, edge", "'wrap'"]),
        ({"pad": 1, "order": "NHCW"}, rand(1, 1, 3, 3), errors.ArgumentError, ["NHCW"]),
        ({"pad": 1}, rand(1, 3, 3), errors.ShapeError, ["4-D", "(1, 3, 3)"]),
        ({"pad": 1, "stride": 2}, rand(1, 1, 3, 3), errors.ArgumentError, ["unknown argument 'stride'"]),
    ])
    def test_errors(self, args, x, exc, fragments):
        raises(exc, op("PadImage", ["X"], ["Y"], **args), [x], *fragments)

    @pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_gradient_matches_torch(self, mode, order):
        pads = (2, 1, 1, 3)
        x = rand(2, 3, 4, 5) if order == "NCHW" else rand(2, 4, 5, 3)
        y = run1("PadImage", [x], pads=list(pads), mode=mode, order=order)
        dy = rand(*y.shape)
        dx = run1("PadImageGradient", [dy], pads=list(pads), mode=mode, order=order)
        expected = torch_grad(lambda t: _torch_pad_t(t, pads, mode, order), x, dy)
        assert_close(dx, expected, rtol=1e-5, atol=1e-5)

    def test_gradient_shape_errors(self):
        raises(errors.ShapeError, op("PadImageGradient", ["dY"], ["dX"], pad=3), [rand(1, 1, 5, 9)], "smaller than")
        raises(errors.ShapeError, op("PadImageGradient", ["dY"], ["dX"], pad=2, mode="reflect"), [rand(1, 1, 6, 9)],
               "reflect")


def _torch_pad_t(t, pads, mode, order):
    top, left, bottom, right = pads
    img = t if order == "NCHW" else t.permute(0, 3, 1, 2)
    out = F.pad(img, (left, right, top, bottom), mode=TORCH_MODE[mode])
    return out if order == "NCHW" else out.permute(0, 2, 3, 1)


# ------------------------------------------------------------------------------- Squeeze / ExpandDims


class TestSqueezeExpandDims:
    @pytest.mark.parametrize("shape,dims,expected", [
        ((3, 4, 5), [0, 4], (1, 3, 4, 5, 1)),  # Caffe2's doc example
        ((3, 4), [2, 0], (1, 3, 1, 4)),  # sorted, then inserted in order
        ((3,), [1, 1, 0], (1, 1, 3)),  # duplicates dropped
        ((), [0], (1,)),
    ])
    def test_expand_dims(self, shape, dims, expected):
        x = np.arange(int(np.prod(shape)), dtype=F32).reshape(shape)
        y = run1("ExpandDims", [x], dims=dims)
        assert y.shape == expected
        np.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))
        back = run1("Squeeze", [y], dims=dims)  # the exact inverse with the same dims
        assert back.shape == shape

    def test_squeeze_only_listed_dims(self):
        x = rand(1, 3, 1, 2, 1)
        assert run1("Squeeze", [x], dims=[2]).shape == (1, 3, 2, 1)
        assert run1("Squeeze", [x], dims=[4, 0, 4]).shape == (3, 1, 2)

    def test_in_place(self):
        x = rand(2, 1, 3)
        np.testing.assert_array_equal(run(op("Squeeze", ["X"], ["X"], dims=[1]), [x])[0], x[:, 0])
        np.testing.assert_array_equal(run(op("ExpandDims", ["X"], ["X"], dims=[0]), [x])[0], x[None])

    @pytest.mark.parametrize("op_type,dims,x,exc,fragments", [
        ("Squeeze", [1], rand(2, 3), errors.ShapeError, ["dim 1", "is 3, not 1"]),
        ("Squeeze", [2], rand(2, 1), errors.ShapeError, ["at least 3 dims"]),
        ("Squeeze", [], rand(2, 1), errors.ArgumentError, ["'dims' is required"]),
        ("Squeeze", [-1], rand(2, 1), errors.ArgumentError, ["non-negative"]),
        ("ExpandDims", [3], rand(2), errors.ShapeError, ["at least 3 dims"]),
        ("ExpandDims", [0, 4], rand(2), errors.ShapeError, ["at least 3 dims"]),
        ("ExpandDims", [], rand(2), errors.ArgumentError, ["'dims' is required"]),
    ])
    def test_errors(self, op_type, dims, x, exc, fragments):
        raises(exc, op(op_type, ["X"], ["Y"], dims=dims), [x], *fragments)

    def test_gradients_are_each_other_with_the_same_dims(self):
        ops, _ = grads_of(op("Squeeze", ["X"], ["Y"], dims=[0, 2]), ["dY"])
        assert ops[0].type == "ExpandDims" and list(ops[0].arg[0].ints) == [0, 2]
        ops, _ = grads_of(op("ExpandDims", ["X"], ["Y"], dims=[1]), ["dY"])
        assert ops[0].type == "Squeeze"


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestArrayCuda:
    def test_concat_split_info_stays_on_the_host(self, dc):
        a, b = rand(2, 3, 2), rand(2, 1, 2)
        concat = op("Concat", ["A", "B"], ["Y", "info"], axis=1)
        check_devices(dc, concat, [a, b])
        workspace.FeedBlob("A", a, dc[1])
        workspace.FeedBlob("B", b, dc[1])
        workspace.RunOperatorOnce(op("Concat", ["A", "B"], ["Y", "info"], axis=1, device_option=dc[1]))
        assert isinstance(workspace.current().blobs["info"], np.ndarray)
        assert not isinstance(workspace.current().blobs["Y"], np.ndarray)

    def test_concat_gradient_on_device(self, dc):
        x, w, seed = rand(2, 3), rand(2, 1), rand(2, 4)
        results = []
        for device in dc:
            net = core.Net(f"concat_grad_{device.device_type}")
            net.Concat(["X", "W"], ["Y", "info"], axis=1)
            grad_map = net.AddGradientOperators({"Y": "seed"})
            if device.device_type:
                net.RunAllOnGPU()
            for name, value in {"X": x, "W": w, "seed": seed}.items():
                workspace.FeedBlob(name, value, device)
            workspace.RunNetOnce(net)
            results.append([workspace.FetchBlob(str(grad_map[k])) for k in ("X", "W")])
        for cpu, gpu in zip(*results):
            np.testing.assert_array_equal(gpu, cpu)
        np.testing.assert_array_equal(results[1][0], seed[:, :3])

    def test_split_with_sizes_on_the_device(self, dc):
        x = rand(5, 2)
        check_devices(dc, op("Split", ["X", "S"], ["a", "b"], axis=0), [x, np.array([2, 3], np.int32)])

    @pytest.mark.parametrize("args", [{"axes": [2, 0, 1]}, {}])
    def test_transpose_and_order_switch(self, dc, args):
        x = rand(2, 3, 4)
        check_devices(dc, op("Transpose", ["X"], ["Y"], **args), [x])
        check_devices(dc, op("NCHW2NHWC", ["X"], ["Y"]), [x])
        check_devices(dc, op("ChannelShuffle", ["X"], ["Y"], group=3), [x])

    @pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
    def test_pad_image_and_gradient(self, dc, mode):
        x = rand(1, 2, 3, 3)
        check_devices(dc, op("PadImage", ["X"], ["Y"], pads=[2, 1, 0, 2], mode=mode, value=0.25), [x])
        check_devices(dc, op("PadImageGradient", ["dY"], ["dX"], pads=[2, 1, 0, 2], mode=mode), [rand(1, 2, 5, 6)])

    def test_resize_nearest_and_gradient(self, dc):
        x = rand(1, 2, 3, 2)
        check_devices(dc, op("ResizeNearest", ["X"], ["Y"], width_scale=2.0, height_scale=1.5), [x])
        check_devices(dc, op("ResizeNearestGradient", ["dY", "X"], ["dX"], width_scale=2.0, height_scale=1.5),
                      [rand(1, 2, 4, 4), x])

    def test_slice_and_gradient(self, dc):
        x = rand(4, 5)
        check_devices(dc, op("Slice", ["X"], ["Y"], starts=[1, -4], ends=[-1, 4]), [x])
        check_devices(dc, op("SliceGradient", ["X", "dY"], ["dX"], starts=[1, -4], ends=[-1, 4]), [x, rand(3, 2)])

    def test_gather_repeats_and_errors(self, dc):
        x = rand(4, 3)
        idx = np.array([3, 3, -1, 0], np.int64)
        check_devices(dc, op("Gather", ["X", "I"], ["Y"]), [x, idx])
        outs = check_devices(dc, op("GatherGradient", ["X", "I", "dY"], ["dX"]), [x, idx, rand(4, 3)])
        assert np.count_nonzero(outs[1][0][1:3]) == 0  # rows 1 and 2 are never read
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"]), [x, np.array([0, 7], np.int32)], "INDICES[1]",
               "= 7", device_option=dc[1])
        raises(errors.ShapeError, op("GatherGradient", ["X", "I", "dY"], ["dX"]),
               [x, np.array([0, -9], np.int32), rand(2, 3)], "INDICES[1]", device_option=dc[1])

    def test_squeeze_expand_dims(self, dc):
        x = rand(2, 1, 3)
        check_devices(dc, op("Squeeze", ["X"], ["Y"], dims=[1]), [x])
        check_devices(dc, op("ExpandDims", ["X"], ["X"], dims=[0, 4]), [x])
