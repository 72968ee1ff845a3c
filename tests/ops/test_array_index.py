"""Edge cases of the array family's indexing and resizing ops: Slice (Caffe2's negative-end
convention), Gather (wrap, bounds, empty axis, dense gradient) and ResizeNearest (float32
index rule); the rest of the family and CPU vs CUDA are in test_array.py.

Expectations are NumPy written here (or torch: F.interpolate and autograd for the
gradients), never the ops' own references.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from nbcaffe import core, errors, workspace
from nbcaffe.testing import strategies as nst
from tests.ops._util import assert_close, grads_of, op, raises, run, run1, torch_grad

F32 = np.float32
RNG = np.random.default_rng(2024)


def rand(*shape, dtype=F32):
    return RNG.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------- Slice


def caffe2_slice(x, starts, ends):
    """Caffe2's index rule written out: negative i -> size + 1 + i, clamp to size."""
    index = []
    for d in range(x.ndim):
        if d >= len(starts):
            index.append(slice(None))
            continue
        size = x.shape[d]
        s = starts[d] + size + 1 if starts[d] < 0 else starts[d]
        e = ends[d] + size + 1 if ends[d] < 0 else ends[d]
        index.append(slice(min(s, size), min(e, size)))
    return x[tuple(index)]


class TestSlice:
    def test_caffe2_doc_example(self):
        data = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], F32)
        out = run1("Slice", [data], starts=[0, 1], ends=[-1, 3])
        np.testing.assert_array_equal(out, [[2, 3], [6, 7]])

    @pytest.mark.parametrize("starts,ends,expected", [
        ([0], [-1], slice(0, 6)),  # -1 = to the end (inclusive of the last element)
        ([0], [-2], slice(0, 5)),  # -2 drops the last element
        ([-3], [-1], slice(4, 6)),  # start -3 = 6 + 1 - 3 = 4
        ([-7], [2], slice(0, 2)),
        ([2], [100], slice(2, 6)),  # clamped
        ([9], [12], slice(6, 6)),  # start past the end: empty
        ([3], [3], slice(3, 3)),
    ])
    def test_index_rules(self, starts, ends, expected):
        x = np.arange(6, dtype=np.int64)
        np.testing.assert_array_equal(run1("Slice", [x], starts=starts, ends=ends), x[expected])

    @given(shape=nst.shapes(1, 3, 0, 5), data=st.data())
    def test_multi_dim_matches_numpy(self, shape, data):
        x = np.arange(int(np.prod(shape)), dtype=F32).reshape(shape)
        n = data.draw(st.integers(1, len(shape)))
        starts, ends = [], []
        for d in range(n):
            size = shape[d]
            s = data.draw(st.integers(-size - 1, size + 1))
            lo = (s + size + 1 if s < 0 else s) if size else 0
            lo = min(lo, size)
            e = data.draw(st.sampled_from([-1, size, lo, min(lo + 1, size) or -1]))
            starts.append(s)
            ends.append(e)
        expected = caffe2_slice(x, starts, ends)
        np.testing.assert_array_equal(run1("Slice", [x], starts=starts, ends=ends), expected)
        as_inputs = run1("Slice", [x, np.array(starts, np.int32), np.array(ends, np.int32)])
        np.testing.assert_array_equal(as_inputs, expected)

    @pytest.mark.parametrize("starts,ends,fragments", [
        ([3], [1], ["[3, 1)", "dim 0"]),
        ([-8], [2], ["start -8"]),
        ([0, 0, 0], [1, 1, 1], ["3 entries", "2 dims"]),
        ([0], [1, 2], ["same length"]),
    ])
    def test_errors(self, starts, ends, fragments):
        raises(errors.ShapeError, op("Slice", ["X"], ["Y"], starts=starts, ends=ends), [rand(6, 2)], *fragments)

    def test_argument_and_arity_errors(self):
        x = rand(4)
        raises(errors.ArgumentError, op("Slice", ["X"], ["Y"], starts=[0]), [x], "'starts' and 'ends'")
        raises(errors.ArgumentError, op("Slice", ["X", "S", "E"], ["Y"], starts=[0], ends=[1]),
               [x, np.array([0]), np.array([1])], "do not also give")
        raises(errors.SchemaError, op("Slice", ["X", "S"], ["Y"]), [x, np.array([0])], "3 inputs")
        raises(errors.ShapeError, op("Slice", ["X", "S", "E"], ["Y"]), [x, np.array([0.0]), np.array([1])],
               "1-D int")

    def test_gradient_zero_fills_outside_the_window(self):
        x = rand(4, 5)
        for inputs, names, args in [([x], ["X"], {"starts": [1, -4], "ends": [3, -1]}),  # -4 -> 2
                                    ([x, np.array([1, 2], np.int64), np.array([3, 5], np.int64)], ["X", "S", "E"],
                                     {})]:
            slice_op = op("Slice", names, ["Y"], **args)
            ops, _ = grads_of(slice_op, ["dY"])
            assert ops[0].type == "SliceGradient" and list(ops[0].input) == names + ["dY"]
            dy = rand(2, 3)
            dx = run(ops[0], inputs + [dy])[0]
            expected = np.zeros((4, 5), F32)
            expected[1:3, 2:5] = dy
            np.testing.assert_array_equal(dx, expected)

    def test_gradient_shape_mismatch(self):
        raises(errors.ShapeError, op("SliceGradient", ["X", "dY"], ["dX"], starts=[1], ends=[3]),
               [rand(4, 5), rand(3, 5)], "dY (3, 5)", "(2, 5)")


# ------------------------------------------------------------------------------- Gather


class TestGather:
    def test_caffe2_doc_example(self):
        data = np.array([[1.0, 1.2], [2.3, 3.4], [4.5, 5.7]], F32)
        out = run1("Gather", [data, np.array([[0, 1], [1, 2]], np.int32)])
        np.testing.assert_array_equal(out, np.array([[[1.0, 1.2], [2.3, 3.4]], [[2.3, 3.4], [4.5, 5.7]]], F32))

    @given(shape=nst.shapes(1, 3, 1, 4), idx_shape=nst.shapes(0, 2, 0, 3), data=st.data())
    def test_matches_numpy_take(self, shape, idx_shape, data):
        axis = data.draw(st.integers(-len(shape), len(shape) - 1))
        d = shape[axis]
        idx = np.array(data.draw(st.lists(st.integers(0, d - 1), min_size=int(np.prod(idx_shape)),
                                          max_size=int(np.prod(idx_shape))))).reshape(idx_shape)
        idx = idx.astype(data.draw(st.sampled_from([np.int32, np.int64])))
        x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
        np.testing.assert_array_equal(run1("Gather", [x, idx], axis=axis), np.take(x, idx, axis=axis))

    def test_negative_indices_wrap_on_axis_zero_only_by_default(self):
        x = rand(4, 3)
        np.testing.assert_array_equal(run1("Gather", [x, np.array([-1, -4, 0])]), x[[3, 0, 0]])
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"], axis=1), [x, np.array([-1])], "-1",
               "wrap_indices=0")
        np.testing.assert_array_equal(run1("Gather", [x, np.array([-1])], axis=1, wrap_indices=1), x[:, [2]])
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"], wrap_indices=0), [x, np.array([-1])], "[0, 4)")

    @pytest.mark.parametrize("indices,fragments", [
        (np.array([0, 4, 1], np.int64), ["INDICES[1]", "= 4", "size 4", "[-4, 4)"]),
        (np.array([[0, 1], [2, -5]], np.int32), ["INDICES[3]", "= -5"]),
    ])
    def test_out_of_range_is_a_shape_error(self, indices, fragments):
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"]), [rand(4, 2), indices], *fragments, "(4, 2)")

    def test_bad_types_and_axis(self):
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"]), [rand(4, 2), np.array([0.0])], "int32 or int64")
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"]), [rand(4, 2), np.array([0], np.int16)], "int16")
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"], axis=2), [rand(4, 2), np.array([0])], "axis=2")
        raises(errors.ShapeError, op("Gather", ["X", "I"], ["Y"]), [np.float32(1.0), np.array([0])], "0-d")

    def test_empty_cases(self):
        x = rand(4, 3)
        assert run1("Gather", [x, np.zeros((0,), np.int64)]).shape == (0, 3)
        assert run1("Gather", [x, np.zeros((2, 0), np.int32)], axis=1).shape == (4, 2, 0)
        # Caffe2's empty-batch rule: an empty axis keeps DATA's shape and ignores the indices
        assert run1("Gather", [np.zeros((0, 3), F32), np.array([5, 7])]).shape == (0, 3)

    def test_int_data(self):
        x = np.arange(12, dtype=np.int64).reshape(3, 4)
        np.testing.assert_array_equal(run1("Gather", [x, np.array([2, 2, 0], np.int32)], axis=1), x[:, [2, 2, 0]])

    @pytest.mark.parametrize("axis", [0, 1, -1])
    def test_dense_gradient_scatter_adds_repeats(self, axis):
        x = rand(3, 4, 2)
        idx = np.array([[1, 0], [1, 1]], np.int64)
        y = run1("Gather", [x, idx], axis=axis)
        dy = rand(*y.shape)
        ops, g = grads_of(op("Gather", ["X", "I"], ["Y"], axis=axis), ["dY"])
        assert [o.type for o in ops] == ["GatherGradient"] and list(ops[0].input) == ["X", "I", "dY"]
        dx = run(ops[0], [x, idx, dy])[0]
        expected = torch_grad(lambda t: torch.index_select(t, axis % 3, torch.tensor(idx.reshape(-1))).reshape(
            y.shape), x, dy)
        assert_close(dx, expected, rtol=1e-5, atol=1e-6)

    def test_gradient_errors(self):
        raises(errors.ShapeError, op("GatherGradient", ["X", "I", "dY"], ["dX"]),
               [rand(4, 2), np.array([1, 2]), rand(3, 2)], "dY (3, 2)", "(2, 2)")
        raises(errors.ShapeError, op("GatherGradient", ["X", "I", "dY"], ["dX"]),
               [rand(4, 2), np.array([1, 9]), rand(2, 2)], "INDICES[1]", "= 9")

    def test_shape_inference(self):
        net = core.Net("gather_infer")
        net.Gather(["X", "I"], ["Y"], axis=1)
        shapes, _ = workspace.InferShapesAndTypes([net], {"X": [2, 5, 3], "I": [4, 1]},
                                                  blob_types={"X": core.DataType.FLOAT, "I": core.DataType.INT32})
        assert shapes["Y"] == [2, 4, 1, 3]
        # dims only: every blob is typed FLOAT (Caffe2's rule); the index dtype is checked at run time
        shapes, _ = workspace.InferShapesAndTypes([net], {"X": [2, 5, 3], "I": [4]})
        assert shapes["Y"] == [2, 4, 3]


# ------------------------------------------------------------------------------- ResizeNearest


def nearest_expected(x, hs, ws, order="NCHW"):
    """Caffe2's rule with float32 arithmetic, written as loops."""
    img = x if order == "NCHW" else np.moveaxis(x, -1, 1)
    n, c, h, w = img.shape
    oh, ow = int(np.float32(h) * np.float32(hs)), int(np.float32(w) * np.float32(ws))
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            si = min(int(np.float32(i) / np.float32(hs)), h - 1)
            sj = min(int(np.float32(j) / np.float32(ws)), w - 1)
            out[:, :, i, j] = img[:, :, si, sj]
    return out if order == "NCHW" else np.moveaxis(out, 1, -1)


class TestResizeNearest:
    @pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_integer_scales_match_torch(self, scale, order):
        x = rand(2, 3, 4, 5) if order == "NCHW" else rand(2, 4, 5, 3)
        img = torch.from_numpy(x if order == "NCHW" else np.moveaxis(x, -1, 1).copy())
        expected = F.interpolate(img, scale_factor=scale, mode="nearest").numpy()
        expected = expected if order == "NCHW" else np.moveaxis(expected, 1, -1)
        y = run1("ResizeNearest", [x], width_scale=scale, height_scale=scale, order=order)
        np.testing.assert_array_equal(y, expected)

    @pytest.mark.parametrize("hs,ws", [(1.5, 0.5), (0.3, 2.5), (1.7, 1.3), (0.1, 0.25)])
    def test_fractional_scales(self, hs, ws):
        x = rand(1, 2, 7, 5)
        y = run1("ResizeNearest", [x], height_scale=hs, width_scale=ws)
        assert y.shape == (1, 2, int(7 * hs), int(5 * ws))
        np.testing.assert_array_equal(y, nearest_expected(x, hs, ws))

    def test_scales_input_overrides_arguments(self):
        x = rand(1, 1, 3, 4)
        y = run1("ResizeNearest", [x, np.array([2.0, 0.5], F32)], width_scale=3.0)
        np.testing.assert_array_equal(y, nearest_expected(x, 2.0, 0.5))

    def test_errors(self):
        raises(errors.ArgumentError, op("ResizeNearest", ["X"], ["Y"], width_scale=0.0), [rand(1, 1, 2, 2)], "> 0")
        raises(errors.ArgumentError, op("ResizeNearest", ["X"], ["Y"], order="HWC"), [rand(1, 1, 2, 2)], "HWC")
        raises(errors.ShapeError, op("ResizeNearest", ["X"], ["Y"]), [rand(1, 2, 2)], "4-D")
        raises(errors.ShapeError, op("ResizeNearest", ["X", "S"], ["Y"]), [rand(1, 1, 2, 2), np.ones(3, F32)],
               "[height_scale, width_scale]")
        raises(errors.ArgumentError, op("ResizeNearest", ["X", "S"], ["Y"]),
               [rand(1, 1, 2, 2), np.array([1.0, -2.0], F32)], "> 0")

    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_gradient_matches_torch(self, order):
        x = rand(2, 3, 3, 4) if order == "NCHW" else rand(2, 3, 4, 3)
        y = run1("ResizeNearest", [x], width_scale=2.0, height_scale=3.0, order=order)
        dy = rand(*y.shape)
        ops, _ = grads_of(op("ResizeNearest", ["X"], ["Y"], width_scale=2.0, height_scale=3.0, order=order), ["dY"])
        assert ops[0].type == "ResizeNearestGradient" and list(ops[0].input) == ["dY", "X"]
        dx = run(ops[0], [dy, x])[0]

        def fn(t):
            img = t if order == "NCHW" else t.permute(0, 3, 1, 2)
            out = F.interpolate(img, scale_factor=(3.0, 2.0), mode="nearest")
            return out if order == "NCHW" else out.permute(0, 2, 3, 1)

        assert_close(dx, torch_grad(fn, x, dy), rtol=1e-5, atol=1e-5)

    def test_gradient_of_a_downsample_drops_unread_pixels(self):
        x = rand(1, 1, 4, 4)
        dy = rand(1, 1, 2, 2)
        dx = run1("ResizeNearestGradient", [dy, x], width_scale=0.5, height_scale=0.5)
        expected = np.zeros((1, 1, 4, 4), F32)
        expected[0, 0, ::2, ::2] = dy[0, 0]
        np.testing.assert_array_equal(dx, expected)

    def test_gradient_shape_error(self):
        raises(errors.ShapeError, op("ResizeNearestGradient", ["dY", "X"], ["dX"], width_scale=2.0),
               [rand(1, 1, 2, 5), rand(1, 1, 2, 3)], "dY (1, 1, 2, 5)", "(1, 1, 2, 6)")
