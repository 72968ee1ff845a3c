"""Edge cases of FC: axis/axis_w flattening, shape and dtype errors, empty tensors, dtypes.

Expected values are a float64 NumPy matmul written here: X viewed as (M, K) at ``axis``,
W as (N, K) at ``axis_w``, Y = X Wᵀ + b with shape X.dims[:axis] + (N,).
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from nbcaffe import core, errors, workspace
from nbcaffe.testing import check_devices, check_reference
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run1

F32 = np.float32


def np_fc(x, w, b, axis=1, axis_w=1):
    axis = axis % x.ndim
    axis_w = axis_w % w.ndim
    m, k = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
    n = math.prod(w.shape[:axis_w])
    y = x.reshape(m, k).astype(np.float64) @ w.reshape(n, k).astype(np.float64).T + b.reshape(n)
    return y.reshape(x.shape[:axis] + (n,))


@st.composite
def fc_case(draw):
    """(X, W, b, args): X of rank 1..4 split at a random axis, W split at a random axis_w."""
    x_shape = draw(nst.shapes(1, 4, 1, 4))
    ndim = len(x_shape)
    axis = draw(st.integers(-ndim, ndim - 1))
    k_dims = x_shape[axis % ndim:]
    n = draw(st.integers(1, 4))
    w_lead = draw(st.sampled_from([(n,), (1, n), (n, 1)]))
    w_trail = draw(st.sampled_from([k_dims, (math.prod(k_dims),)]))
    values = st.floats(-2.0, 2.0, width=32)
    x = draw(hnp.arrays(F32, x_shape, elements=values))
    w = draw(hnp.arrays(F32, w_lead + w_trail, elements=values))
    b = draw(hnp.arrays(F32, (n,), elements=values))
    args = {}
    if axis != 1 or draw(st.booleans()):
        args["axis"] = axis
    if len(w_lead) != 1 or draw(st.booleans()):
        args["axis_w"] = len(w_lead) if draw(st.booleans()) else len(w_lead) - len(w_lead + w_trail)
    return x, w, b, args


class TestFC:
    @given(case=fc_case())
    def test_axis_and_axis_w(self, case):
        x, w, b, args = case
        expected = np_fc(x, w, b, args.get("axis", 1), args.get("axis_w", 1))
        out = check_reference(CPU_OPTION, op("FC", ["X", "W", "b"], ["Y"], **args), [x, w, b],
                              reference=lambda X, W, B: (expected.astype(F32),), threshold=1e-4)[0]
        axis = args.get("axis", 1) % x.ndim
        assert out.shape == x.shape[:axis] + (b.size,)

    @pytest.mark.parametrize("x_shape,w_shape,args,out_shape", [
        ((2, 3, 4), (5, 12), {}, (2, 5)),
        ((2, 3, 4), (5, 4), {"axis": 2}, (2, 3, 5)),
        ((2, 3, 4), (5, 4), {"axis": -1}, (2, 3, 5)),
        ((2, 3, 4), (5, 3, 4), {}, (2, 5)),
        ((2, 3, 4), (5, 3, 4), {"axis_w": 1}, (2, 5)),
        ((2, 3, 4), (1, 5, 12), {"axis_w": 2}, (2, 5)),
        ((2, 3, 4), (5, 24), {"axis": 0}, (5,)),
    ])
    def test_output_shapes(self, x_shape, w_shape, args, out_shape):
        rng = np.random.default_rng(0)
        x = rng.standard_normal(x_shape).astype(F32)
        w = rng.standard_normal(w_shape).astype(F32)
        n = math.prod(w_shape[:args.get("axis_w", 1)])
        b = rng.standard_normal(n).astype(F32)
        out = run1("FC", [x, w, b], **args)
        assert out.shape == out_shape
        assert_close(out, np_fc(x, w, b, args.get("axis", 1), args.get("axis_w", 1)), rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("x_shape,w_shape,args,fragments", [
        ((2, 3, 4), (5, 11), {}, ["K=12", "K=11", "(2, 3, 4)", "(5, 11)"]),
        ((2, 3, 4), (5, 12), {"axis": 2}, ["K=4", "K=12", "axis=2"]),
        ((2, 3, 4), (5, 3, 4), {"axis_w": 2}, ["K=12", "K=4", "axis_w=2"]),
    ])
    def test_k_mismatch_message(self, x_shape, w_shape, args, fragments):
        n = math.prod(w_shape[:args.get("axis_w", 1)])
        inputs = [np.ones(x_shape, F32), np.ones(w_shape, F32), np.ones(n, F32)]
        raises(errors.ShapeError, op("FC", ["X", "W", "b"], ["Y"], **args), inputs, *fragments)

    def test_bias_size_mismatch(self):
        inputs = [np.ones((2, 4), F32), np.ones((3, 4), F32), np.ones(4, F32)]
        raises(errors.ShapeError, op("FC", ["X", "W", "b"], ["Y"]), inputs, "b has 4", "N=3")

    @pytest.mark.parametrize("args,fragment", [({"axis": 3}, "axis=3"), ({"axis": -4}, "axis=-4"),
                                               ({"axis_w": 2}, "axis_w=2")])
    def test_axis_out_of_range(self, args, fragment):
        inputs = [np.ones((2, 3, 4), F32), np.ones((5, 12), F32), np.ones(5, F32)]
        raises(errors.ShapeError, op("FC", ["X", "W", "b"], ["Y"], **args), inputs, fragment)

    @pytest.mark.parametrize("dtypes", [(F32, np.float64, F32), (F32, F32, np.float64), (np.float64, F32, F32)])
    def test_mixed_dtypes_raise(self, dtypes):
        inputs = [np.ones((2, 4), dtypes[0]), np.ones((3, 4), dtypes[1]), np.ones(3, dtypes[2])]
        raises(errors.ShapeError, op("FC", ["X", "W", "b"], ["Y"]), inputs, "float32", "float64")

    @pytest.mark.parametrize("m", [1, 2, 8, 16, 17])
    def test_few_rows_take_the_transposed_product(self, m):
        """2-16 rows compute Yᵀ = W · Xᵀ (fc_few_rows_cpu); every row count matches NumPy."""
        from nbcaffe.ops import fc

        rng = np.random.default_rng(3)
        x, w, b = (rng.standard_normal(s).astype(F32) for s in [(m, 300), (70, 300), (70,)])
        assert (2 <= m <= fc.FC_FEW_ROWS) == (m in (2, 8, 16))
        assert_close(run1("FC", [x, w, b]), np_fc(x, w, b), rtol=1e-5, atol=1e-5)

    def test_float64(self):
        rng = np.random.default_rng(1)
        x, w, b = rng.standard_normal((3, 2, 5)), rng.standard_normal((4, 10)), rng.standard_normal(4)
        assert_close(run1("FC", [x, w, b]), np_fc(x, w, b), rtol=1e-12, atol=1e-12, dtype=np.float64)

    def test_integers_are_exact(self):
        x = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
        w = np.array([[1, 2, 3, 4], [-1, 0, 2, 5]], np.int32)
        b = np.array([10, -20], np.int32)
        out = run1("FC", [x, w, b])
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, x @ w.T + b)

    def test_empty_batch(self):
        w, b = np.ones((5, 4), F32), np.arange(5, dtype=F32)
        out = run1("FC", [np.ones((0, 4), F32), w, b])
        assert out.shape == (0, 5) and out.dtype == F32
        out = run1("FC", [np.ones((2, 0, 4), F32), w, b], axis=2)
        assert out.shape == (2, 0, 5)

    def test_zero_k_gives_bias(self):
        b = np.array([1.5, -2.0, 0.25], F32)
        out = run1("FC", [np.ones((2, 0), F32), np.ones((3, 0), F32), b])
        assert_close(out, np.tile(b, (2, 1)), dtype=F32)

    def test_bias_shape_is_flattened(self):
        rng = np.random.default_rng(2)
        x, w, b = (rng.standard_normal(s).astype(F32) for s in [(2, 4), (3, 4), (1, 3)])
        assert_close(run1("FC", [x, w, b]), np_fc(x, w, b), rtol=1e-5, atol=1e-6)

    def test_created_net_reruns_with_new_inputs(self):
        """The runner binds FC to its input arrays; re-fed blobs must be picked up."""
        rng = np.random.default_rng(3)
        net = core.Net("fc_rerun")
        net.FC(["X", "W", "b"], "Y", axis=1)
        w, b = rng.standard_normal((3, 4)).astype(F32), rng.standard_normal(3).astype(F32)
        workspace.FeedBlob("W", w)
        workspace.FeedBlob("b", b)
        workspace.FeedBlob("X", np.zeros((2, 4), F32))
        workspace.CreateNet(net)
        for rows in [2, 2, 5]:
            x = rng.standard_normal((rows, 4)).astype(F32)
            workspace.FeedBlob("X", x)
            workspace.RunNet("fc_rerun")
            assert_close(workspace.FetchBlob("Y"), np_fc(x, w, b), rtol=1e-5, atol=1e-6)


class TestArguments:
    @pytest.mark.parametrize("bad,good", [("axis_W", "axis_w"), ("axsi", "axis")])
    def test_unknown_argument_suggests(self, bad, good):
        inputs = [np.ones((2, 4), F32), np.ones((3, 4), F32), np.ones(3, F32)]
        error = raises(errors.ArgumentError, op("FC", ["X", "W", "b"], ["Y"], **{bad: 1}), inputs,
                       f"'{bad}'", "Did you mean")
        assert good in str(error).split("Did you mean")[1]

    @pytest.mark.parametrize("args", [{"axis": "1"}, {"axis_w": 1.5}, {"axis": [1, 2]}])
    def test_wrong_argument_type(self, args):
        inputs = [np.ones((2, 4), F32), np.ones((3, 4), F32), np.ones(3, F32)]
        raises(errors.ArgumentError, op("FC", ["X", "W", "b"], ["Y"], **args), inputs, f"'{next(iter(args))}'")

    def test_wrong_arity(self):
        raises(errors.SchemaError, op("FC", ["X", "W"], ["Y"]), [np.ones((2, 4), F32), np.ones((3, 4), F32)],
               "3 input(s)")


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestFCCuda:
    @pytest.mark.parametrize("x_shape,w_shape,args", [
        ((3, 4), (2, 4), {}),
        ((2, 3, 2), (5, 2), {"axis": 2}),
        ((2, 3, 2), (1, 5, 6), {"axis_w": 2}),
        ((2, 20), (3, 20), {}),  # K spans two 16-wide tiles
        ((0, 4), (2, 4), {}),
        ((2, 0), (3, 0), {}),
    ])
    def test_matches_cpu(self, dc, x_shape, w_shape, args):
        rng = np.random.default_rng(4)
        x = rng.standard_normal(x_shape).astype(F32)
        w = rng.standard_normal(w_shape).astype(F32)
        b = rng.standard_normal(math.prod(w_shape[:args.get("axis_w", 1)])).astype(F32)
        outs = check_devices(dc, op("FC", ["X", "W", "b"], ["Y"], **args), [x, w, b])
        assert_close(outs[1][0], np_fc(x, w, b, args.get("axis", 1), args.get("axis_w", 1)), rtol=1e-4, atol=1e-5)

    @pytest.mark.filterwarnings("ignore:FeedBlob")
    def test_float64(self, dc):
        rng = np.random.default_rng(5)
        x, w, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
        outs = check_devices(dc, op("FC", ["X", "W", "b"], ["Y"]), [x, w, b], threshold=1e-12)
        assert outs[1][0].dtype == np.float64

    def test_k_mismatch_on_cuda(self, dc):
        inputs = [np.ones((2, 3), F32), np.ones((2, 4), F32), np.ones(2, F32)]
        raises(errors.ShapeError, op("FC", ["X", "W", "b"], ["Y"]), inputs, "K=3", "K=4", device_option=dc[1])


@settings(max_examples=3)
@given(case=fc_case())
@pytest.mark.cuda
def test_cuda_fc_hypothesis(case):
    x, w, b, args = case
    outs = check_devices(nst.device_options(), op("FC", ["X", "W", "b"], ["Y"], **args), [x, w, b])
    assert_close(outs[-1][0], np_fc(x, w, b, args.get("axis", 1), args.get("axis_w", 1)), rtol=1e-4, atol=1e-5)
