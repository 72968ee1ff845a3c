"""Edge cases of the op families added for ONNX coverage (comparison, logical, rounding,
strided_slice, pad, repeat, shape, resize, cumulative, topk, gather_elements, triangular):
NaN and tie rules, clamping, every pad mode, broadcasting gradients, bound checks that name
the bad index, plus CPU vs CUDA on tiny shapes.

Expectations are NumPy written here, never the ops' own references.
"""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import errors
from nbcaffe.devices import CUDA, DeviceOption
from nbcaffe.testing import check_devices, check_gradient
from tests.ops._util import CPU_OPTION, op, raises, run, run1

F32 = np.float32
RNG = np.random.default_rng(7)


def test_comparisons_follow_ieee_nan_rules():
    a = np.array([np.nan, 1.0, 2.0], F32)
    b = np.array([np.nan, 1.0, np.nan], F32)
    assert run1("EQ", [a, b]).tolist() == [False, True, False]
    assert run1("NE", [a, b]).tolist() == [True, False, True]
    assert run1("LE", [a, b]).tolist() == [False, True, False]
    assert run1("IsNaN", [a]).tolist() == [True, False, False]
    inf = np.array([np.inf, -np.inf, 0.0], F32)
    assert run1("IsInf", [inf], detect_positive=0).tolist() == [False, True, False]


def test_comparison_needs_one_dtype():
    raises(errors.ShapeError, op("LT", ["a", "b"], ["c"]), [np.zeros(2, F32), np.zeros(2, np.int64)], "same dtype")


def test_where_broadcasts_and_its_gradient_sums_over_broadcast_dims():
    c = RNG.random((4, 1, 3)) < 0.5
    x = RNG.standard_normal((2, 1)).astype(np.float64)
    y = RNG.standard_normal((3,)).astype(np.float64)
    np.testing.assert_array_equal(run1("Where", [c, x, y]), np.where(c, x, y))
    check_gradient(CPU_OPTION, op("Where", ["c", "x", "y"], ["out"]), [c, x, y], wrt=[1, 2], outputs_with_grads=[0])
    d = RNG.standard_normal((4, 2, 3))
    dx, dy = run(op("WhereGradient", ["c", "d", "x", "y"], ["dx", "dy"]), [c, d, x, y])
    cb = np.broadcast_to(c, d.shape)
    np.testing.assert_allclose(dx, np.where(cb, d, 0).sum(axis=(0, 2)).reshape(2, 1))
    np.testing.assert_allclose(dy, np.where(cb, 0, d).sum(axis=(0, 1)))


def test_round_is_half_to_even_and_keeps_specials():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 1e30, np.inf, np.nan, 0.49999997], F32)
    np.testing.assert_array_equal(run1("Round", [x]), np.round(x))
    np.testing.assert_array_equal(run1("Floor", [x]), np.floor(x))
    np.testing.assert_array_equal(run1("Ceil", [x]), np.ceil(x))
    raises(errors.ShapeError, op("Floor", ["x"], ["y"]), [np.arange(3)], "floating point")


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [100], [0], [1]), ([-1], [-1000], [1], [-1]), ([-100], [2], [2], [2]), ([3, 0], [1, 5], [0, 2], [-1, 3]),
    ([10], [20], [1], [1])])
def test_strided_slice_matches_numpy_slicing(starts, ends, axes, steps):
    x = np.arange(60, dtype=F32).reshape(3, 4, 5)
    index = [slice(None)] * 3
    for s, e, a, k in zip(starts, ends, axes, steps):
        index[a] = slice(s, e if e > -1000 else None, k)
    np.testing.assert_array_equal(run1("StridedSlice", [x], starts=starts, ends=ends, axes=axes, steps=steps),
                                  x[tuple(index)])


def test_strided_slice_errors_name_the_axis():
    x = np.zeros((2, 3), F32)
    raises(errors.ArgumentError, op("StridedSlice", ["x"], ["y"], starts=[0], ends=[1], axes=[1], steps=[0]), [x],
           "step 0 on axis 1")
    raises(errors.ShapeError, op("StridedSlice", ["x"], ["y"], starts=[0], ends=[1], axes=[2]), [x],
           "axis 2 is out of range", "(2, 3)")


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_match_numpy(mode):
    x = RNG.standard_normal((2, 3, 4)).astype(F32)
    pads = [0, 2, 1, 1, 1, 3]
    width = [(0, 1), (2, 1), (1, 3)]
    expected = np.pad(x, width, mode=mode, **({"constant_values": 2.5} if mode == "constant" else {}))
    np.testing.assert_array_equal(run1("Pad", [x], pads=pads, mode=mode, value=2.5), expected)
    check_gradient(CPU_OPTION, op("Pad", ["x"], ["y"], pads=pads, mode=mode), [x.astype(np.float64)], wrt=[0],
                   outputs_with_grads=[0])


def test_pad_negative_pads_crop_and_errors():
    x = np.arange(12, dtype=F32).reshape(3, 4)
    np.testing.assert_array_equal(run1("Pad", [x], pads=[-1, 1, 0, -2]), np.pad(x[1:, :2], [(0, 0), (1, 0)]))
    raises(errors.ArgumentError, op("Pad", ["x"], ["y"], pads=[1, 1]), [x], "2 entries per dim")


def test_expand_tile_and_their_gradients():
    x = RNG.standard_normal((3, 1)).astype(np.float64)
    np.testing.assert_array_equal(run1("Expand", [x, np.array([2, 3, 4])]), np.broadcast_to(x, (2, 3, 4)))
    raises(errors.ShapeError, op("Expand", ["x", "s"], ["y"]), [x, np.array([2, 5])], "does not broadcast")
    check_gradient(CPU_OPTION, op("Expand", ["x", "s"], ["y"]), [x, np.array([2, 3, 4])], wrt=[0],
                   outputs_with_grads=[0])
    np.testing.assert_array_equal(run1("Tile", [x], tiles=3, axis=1), np.tile(x, (1, 3)))
    check_gradient(CPU_OPTION, op("Tile", ["x"], ["y"], tiles=2, axis=0), [x], wrt=[0], outputs_with_grads=[0])


def test_shape_size_range():
    x = np.zeros((2, 0, 5), F32)
    assert run1("Shape", [x]).tolist() == [2, 0, 5]
    assert run1("Shape", [x], axes=[-1]).tolist() == [5]
    assert run1("Size", [x]).shape == () and int(run1("Size", [x])) == 0
    np.testing.assert_array_equal(run1("Range", [np.array(5.0, F32), np.array(1.0, F32), np.array(-1.5, F32)]),
                                  np.arange(5.0, 1.0, -1.5, dtype=F32))
    raises(errors.ShapeError, op("Range", ["a", "b", "c"], ["y"]),
           [np.array(0), np.array(3), np.array(0)], "delta must not be 0")


def test_resize_nearest_and_linear_against_numpy():
    x = RNG.standard_normal((1, 1, 3, 4)).astype(F32)
    y = run1("Resize", [x], scales=[1.0, 1.0, 2.0, 2.0], mode="nearest", coordinate_transformation_mode="asymmetric",
             nearest_mode="floor")
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))
    line = RNG.standard_normal((1, 5)).astype(np.float64)
    y = run1("Resize", [line], sizes=[1, 9], mode="linear", coordinate_transformation_mode="align_corners")
    np.testing.assert_allclose(y[0], np.interp(np.linspace(0, 4, 9), np.arange(5), line[0]), rtol=1e-12)


def test_cumsum_matches_numpy():
    x = RNG.standard_normal((3, 4)).astype(np.float64)
    np.testing.assert_allclose(run1("CumSum", [x], axis=1), np.cumsum(x, 1))
    np.testing.assert_allclose(run1("CumSum", [x], axis=0, exclusive=1), np.cumsum(x, 0) - x)
    np.testing.assert_allclose(run1("CumSum", [x], axis=1, reverse=1), np.cumsum(x[:, ::-1], 1)[:, ::-1])


def test_topk_ties_keep_index_order():
    x = np.array([[1, 3, 3, 2, 3, 1]], np.int64)
    values, indices = run(op("TopK", ["x"], ["v", "i"], k=4), [x])
    assert values.tolist() == [[3, 3, 3, 2]] and indices.tolist() == [[1, 2, 4, 3]]
    values, indices = run(op("TopK", ["x"], ["v", "i"], k=3, largest=0), [x])
    assert values.tolist() == [[1, 1, 2]] and indices.tolist() == [[0, 5, 3]]
    raises(errors.ShapeError, op("TopK", ["x"], ["v", "i"], k=7), [x], "k=7 is outside [0, 6]")


def test_gather_elements_and_a_bad_index_named():
    data = np.arange(12, dtype=F32).reshape(3, 4)
    idx = np.array([[0, -1], [2, 1]])
    np.testing.assert_array_equal(run1("GatherElements", [data, idx], axis=1), [[0, 3], [6, 5]])
    raises(errors.ShapeError, op("GatherElements", ["d", "i"], ["y"], axis=0), [data, np.array([[0, 3]])],
           "INDICES[0, 1] is outside [-3, 3)")


def test_trilu_matches_numpy():
    x = RNG.standard_normal((2, 4, 5)).astype(F32)
    np.testing.assert_array_equal(run1("Trilu", [x], k=1), np.triu(x, 1))
    np.testing.assert_array_equal(run1("Trilu", [x], upper=0, k=-2), np.tril(x, -2))


@pytest.mark.cuda
def test_cpu_matches_cuda_on_the_tricky_ones():
    gpu = DeviceOption(CUDA, 0)
    x = RNG.standard_normal((2, 3, 4)).astype(F32)
    cases = [
        (op("Where", ["c", "x", "y"], ["o"]), [RNG.random((2, 1, 4)) < 0.5, x, np.float32(1.5) * np.ones(4, F32)]),
        (op("Pad", ["x"], ["y"], pads=[0, 1, 2, 1, 0, 3], mode="reflect"), [x]),
        (op("StridedSlice", ["x"], ["y"], starts=[-1, 0], ends=[-100, 4], axes=[2, 1], steps=[-2, 2]), [x]),
        (op("Resize", ["x"], ["y"], scales=[1.0, 1.5, 0.5], mode="cubic", antialias=1), [x]),
        (op("TopK", ["x"], ["v", "i"], k=2, axis=1), [np.round(x)]),
        (op("GatherElements", ["d", "i"], ["y"], axis=2), [x, RNG.integers(-4, 4, (2, 3, 2))]),
        (op("Round", ["x"], ["y"]), [np.array([0.5, 1.5, 2.5, -0.5, np.nan, np.inf], F32)]),
    ]
    for op_def, inputs in cases:
        check_devices([CPU_OPTION, gpu], op_def, inputs)
