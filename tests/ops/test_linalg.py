"""Edge cases of the linear-algebra family: MatMul, BatchMatMul, ElementwiseLinear.

Expected values are float64 NumPy products written here (and torch autograd for gradients):
MatMul views A as (prod(A.dims[:axis_a]), prod(A.dims[axis_a:])) and B likewise, transposes
on request and returns a 2-D (M, N); BatchMatMul follows numpy.matmul with Caffe2's 1-D rules.
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from nbcaffe import autograd, errors, workspace
from nbcaffe.testing import check_devices, check_reference
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run, run1

F32 = np.float32


def np_matmul2d(a, b, axis_a=1, axis_b=1, trans_a=False, trans_b=False):
    axis_a, axis_b = axis_a % a.ndim, axis_b % b.ndim
    a2 = a.astype(np.float64).reshape(math.prod(a.shape[:axis_a]), math.prod(a.shape[axis_a:]))
    b2 = b.astype(np.float64).reshape(math.prod(b.shape[:axis_b]), math.prod(b.shape[axis_b:]))
    return (a2.T if trans_a else a2) @ (b2.T if trans_b else b2)


def gradients(op_def, inputs, gy, device_option=CPU_OPTION, wrt=(0, 1)):
    """Run op_def's gradient ops (from its registered maker) for output gradient gy; returns the
    gradient of each input in ``wrt`` and the gradient OperatorDefs."""
    g_output = [op_def.output[0] + "_grad"]
    grad_ops, g_input = autograd.GradientRegistry.GetGradientForOp(op_def, g_output)
    with workspace.temp_workspace("_linalg_grad_"):
        for name, value in zip(op_def.input, inputs):
            workspace.FeedBlob(name, value, device_option)
        workspace.FeedBlob(g_output[0], gy, device_option)
        for grad_op in grad_ops:
            grad_op.device_option.CopyFrom(device_option)
            workspace.RunOperatorOnce(grad_op)
        return [workspace.FetchBlob(g_input[i]) for i in wrt], grad_ops


def torch_grads(fn, inputs, gy):
    ts = [torch.tensor(x.astype(np.float64), requires_grad=True) for x in inputs]
    fn(*ts).backward(torch.tensor(gy.astype(np.float64)))
    return [t.grad.numpy() for t in ts]


@st.composite
def matmul_case(draw):
    """(A, B, args): A split into (M|K) at a random axis, B into (K|N), random transposes."""
    m_dims = draw(nst.shapes(0, 2, 1, 3))
    k_dims = draw(nst.shapes(1, 2, 1, 3))
    n_dims = draw(nst.shapes(0, 2, 1, 3))
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    a_shape = (k_dims + m_dims) if trans_a else (m_dims + k_dims)
    b_shape = (n_dims + k_dims) if trans_b else (k_dims + n_dims)
    if not m_dims:  # the split axis must lie inside the shape: give M a dim of 1
        a_shape = a_shape + (1,) if trans_a else (1,) + a_shape
        m_dims = (1,)
    if not n_dims:
        b_shape = (1,) + b_shape if trans_b else b_shape + (1,)
        n_dims = (1,)
    axis_a = len(k_dims) if trans_a else len(m_dims)
    axis_b = len(n_dims) if trans_b else len(k_dims)
    values = st.floats(-2, 2, width=32)
    a = draw(hnp.arrays(F32, a_shape, elements=values))
    b = draw(hnp.arrays(F32, b_shape, elements=values))
    args = {"axis_a": axis_a, "axis_b": axis_b, "trans_a": int(trans_a), "trans_b": int(trans_b)}
    return a, b, args


class TestMatMul:
    @given(case=matmul_case())
    def test_axes_and_transposes(self, case):
        a, b, args = case
        expected = np_matmul2d(a, b, **args)
        out = check_reference(CPU_OPTION, op("MatMul", ["A", "B"], ["Y"], **args), [a, b],
                              reference=lambda A, B: (expected.astype(F32),), threshold=1e-4)[0]
        assert out.ndim == 2  # Caffe2: always (M, N), whatever the axes

    def test_caffe2_doc_example(self):
        a = np.array([[1, 8, 3], [6, 4, 4], [5, 4, 7]], F32)
        b = np.array([[4, 0, 3], [3, 1, 1], [8, 5, 8]], F32)
        y = run1("MatMul", [a, b])
        assert_close(y, [[52, 23, 35], [68, 24, 54], [88, 39, 75]], dtype=F32)

    @pytest.mark.parametrize("a_shape,b_shape,args,fragments", [
        ((3, 4), (5, 6), {}, ["(M, K) = (3, 4)", "(K, N) = (5, 6)", "K dims must match"]),
        ((3, 4), (4, 6), {"trans_a": 1}, ["transposed", "(M, K) = (4, 3)"]),
        ((2, 3, 4), (4, 5), {"axis_a": 3}, ["axis_a", "(2, 3, 4)"]),
        ((3, 4), (4, 5), {"axis_b": -3}, ["axis_b", "(4, 5)"]),
    ])
    def test_shape_errors_name_shapes_and_args(self, a_shape, b_shape, args, fragments):
        inputs = [np.ones(a_shape, F32), np.ones(b_shape, F32)]
        raises(errors.ShapeError, op("MatMul", ["A", "B"], ["Y"], **args), inputs, *fragments)

    def test_dtype_mismatch(self):
        raises(errors.ShapeError, op("MatMul", ["A", "B"], ["Y"]), [np.ones((2, 2), F32), np.ones((2, 2))],
               "float32", "float64")

    @pytest.mark.parametrize("dtype", [np.float64, np.int32])
    def test_other_dtypes(self, dtype):
        rng = np.random.default_rng(1)
        a = rng.integers(-4, 4, (3, 5)).astype(dtype)
        b = rng.integers(-4, 4, (5, 2)).astype(dtype)
        y = run1("MatMul", [a, b])
        assert y.dtype == dtype
        assert_close(y, a.astype(np.int64) @ b.astype(np.int64))

    def test_empty_k_gives_zeros_and_empty_m_gives_empty(self):
        assert_close(run1("MatMul", [np.ones((3, 0), F32), np.ones((0, 2), F32)]), np.zeros((3, 2)))
        assert run1("MatMul", [np.ones((0, 4), F32), np.ones((4, 2), F32)]).shape == (0, 2)

    def test_third_input_gives_the_shape(self):
        rng = np.random.default_rng(2)
        a, b = rng.standard_normal((2, 6)).astype(F32), rng.standard_normal((6, 6)).astype(F32)
        y = run1("MatMul", [a, b, np.zeros((3, 2, 2), F32)])
        assert_close(y, (a.astype(np.float64) @ b).reshape(3, 2, 2), rtol=1e-5, atol=1e-5)
        raises(errors.ShapeError, op("MatMul", ["A", "B", "S"], ["Y"]), [a, b, np.zeros(5, F32)], "M*N = 2*6")

    def test_rerun_with_new_shapes(self):
        net_ops = op("MatMul", ["A", "B"], ["Y"], trans_b=1)
        for m, k, n in [(2, 3, 4), (5, 1, 2)]:
            a, b = np.ones((m, k), F32), np.full((n, k), 2, F32)
            assert_close(run(net_ops, [a, b])[0], np.full((m, n), 2.0 * k))

    @pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
    def test_gradient_ops_are_caffe2s(self, trans_a, trans_b):
        """GetMatMulGradient: two MatMul ops, each with the forward input as a shape-giving third
        input, transposes and axes as in Caffe2, and no copied arguments."""
        op_def = op("MatMul", ["A", "B"], ["Y"], trans_a=trans_a, trans_b=trans_b, axis_a=1, axis_b=1)
        grad_ops, g_input = autograd.GradientRegistry.GetGradientForOp(op_def, ["Y_grad"])
        assert g_input == ["A_grad", "B_grad"]
        assert [g.type for g in grad_ops] == ["MatMul", "MatMul"]
        assert list(grad_ops[0].input)[2] == "A" and list(grad_ops[1].input)[2] == "B"
        expected_inputs = {
            (0, 0): (["Y_grad", "B"], ["A", "Y_grad"]), (1, 0): (["B", "Y_grad"], ["A", "Y_grad"]),
            (0, 1): (["Y_grad", "B"], ["Y_grad", "A"]), (1, 1): (["B", "Y_grad"], ["Y_grad", "A"])}
        assert [list(g.input)[:2] for g in grad_ops] == list(expected_inputs[(trans_a, trans_b)])
        for g in grad_ops:
            assert all(a.name in ("trans_a", "trans_b", "axis_a", "axis_b") for a in g.arg)

    @pytest.mark.parametrize("a_shape,b_shape,args", [
        ((3, 4), (4, 5), {}),
        ((2, 3, 4), (4, 5), {"axis_a": 2}),  # Caffe2 kept axis_a in a bool: 2 became 1
        ((2, 3, 4), (2, 2, 5), {"axis_a": 2, "axis_b": 2}),
        ((4, 3), (2, 2, 5), {"trans_a": 1, "axis_b": 2}),
        ((3, 2, 2), (5, 4), {"trans_b": 1, "axis_a": 1}),
        ((2, 2, 3), (5, 2, 2), {"trans_a": 1, "trans_b": 1, "axis_a": 2, "axis_b": 1}),
    ])
    def test_gradient_matches_torch(self, a_shape, b_shape, args):
        rng = np.random.default_rng(3)
        a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
        axis_a, axis_b = args.get("axis_a", 1), args.get("axis_b", 1)
        ta, tb = args.get("trans_a", 0), args.get("trans_b", 0)

        def fn(ta_, tb_):
            a2 = ta_.reshape(math.prod(a_shape[:axis_a]), -1)
            b2 = tb_.reshape(math.prod(b_shape[:axis_b]), -1)
            return (a2.T if ta else a2) @ (b2.T if tb else b2)

        y = np_matmul2d(a, b, **args)
        gy = rng.standard_normal(y.shape)
        (da, db), _ = gradients(op("MatMul", ["A", "B"], ["Y"], **args), [a, b], gy)
        ea, eb = torch_grads(fn, [a, b], gy)
        assert da.shape == a_shape and db.shape == b_shape
        assert_close(da, ea, rtol=1e-10, atol=1e-12)
        assert_close(db, eb, rtol=1e-10, atol=1e-12)


@st.composite
def broadcast_case(draw):
    """(A, B, args) for broadcast=1: batch dims that broadcast NumPy-style, optional 1-D operands."""
    m, k, n = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(nst.shapes(0, 2, 1, 3))
    a_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))):]
    b_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))):]
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    a_shape = ((k,) if draw(st.integers(0, 4)) == 0 else a_batch + ((k, m) if trans_a else (m, k)))
    b_shape = ((k,) if draw(st.integers(0, 4)) == 0 else b_batch + ((n, k) if trans_b else (k, n)))
    values = st.floats(-2, 2, width=32)
    a = draw(hnp.arrays(F32, a_shape, elements=values))
    b = draw(hnp.arrays(F32, b_shape, elements=values))
    return a, b, {"broadcast": 1, "trans_a": int(trans_a), "trans_b": int(trans_b)}


def np_batch_matmul(a, b, trans_a=0, trans_b=0, **_):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if trans_a and a.ndim > 1:
        a = np.swapaxes(a, -1, -2)
    if trans_b and b.ndim > 1:
        b = np.swapaxes(b, -1, -2)
    y = np.matmul(a, b)
    return y.reshape(1) if y.ndim == 0 else y  # Caffe2: vector . vector is a 1-element tensor


class TestBatchMatMul:
    def test_batched_with_transposes(self):
        rng = np.random.default_rng(5)
        a = rng.standard_normal((2, 3, 4, 5)).astype(F32)
        b = rng.standard_normal((2, 3, 6, 4)).astype(F32)
        y = run1("BatchMatMul", [a, b], trans_a=1, trans_b=1)
        expected = np.einsum("xykm,xynk->xymn", a.astype(np.float64), b.astype(np.float64))
        assert_close(y, expected, rtol=1e-5, atol=1e-5, dtype=F32)

    @given(case=broadcast_case())
    def test_broadcast_matches_numpy_matmul(self, case):
        a, b, args = case
        expected = np_batch_matmul(a, b, **args)
        check_reference(CPU_OPTION, op("BatchMatMul", ["A", "B"], ["Y"], **args), [a, b],
                        reference=lambda A, B: (expected.astype(F32),), threshold=1e-4)

    @pytest.mark.parametrize("a_shape,b_shape,y_shape", [
        ((4,), (4,), (1,)),
        ((4,), (2, 4, 3), (2, 3)),
        ((2, 3, 4), (4,), (2, 3)),
        ((3, 1, 2, 4), (5, 4, 6), (3, 5, 2, 6)),
        ((2, 4), (3, 4, 5), (3, 2, 5)),
    ])
    def test_broadcast_shapes(self, a_shape, b_shape, y_shape):
        y = run1("BatchMatMul", [np.ones(a_shape, F32), np.ones(b_shape, F32)], broadcast=1)
        assert y.shape == y_shape
        assert_close(y, np.full(y_shape, 4.0))

    @pytest.mark.parametrize("a_shape,b_shape,fragments", [
        ((2, 3, 4), (4, 5), ["broadcast=1", "(2, 3, 4)", "(4, 5)"]),
        ((2, 3, 4), (3, 4, 5), ["same batch dims", "broadcast=1"]),
        ((4,), (4, 5), ["rank >= 2"]),
    ])
    def test_without_broadcast_batch_dims_must_match(self, a_shape, b_shape, fragments):
        inputs = [np.ones(a_shape, F32), np.ones(b_shape, F32)]
        raises(errors.ShapeError, op("BatchMatMul", ["A", "B"], ["Y"]), inputs, *fragments)

    def test_errors_with_broadcast(self):
        raises(errors.ShapeError, op("BatchMatMul", ["A", "B"], ["Y"], broadcast=1),
               [np.ones((2, 3, 4), F32), np.ones((3, 4, 5), F32)], "do not broadcast")
        raises(errors.ShapeError, op("BatchMatMul", ["A", "B"], ["Y"], broadcast=1, trans_b=1),
               [np.ones((2, 3, 4), F32), np.ones((4, 5), F32)], "(K, N) = (5, 4)", "K dims must match")

    def test_empty_batch(self):
        y = run1("BatchMatMul", [np.ones((0, 2, 3), F32), np.ones((0, 3, 4), F32)])
        assert y.shape == (0, 2, 4)

    @pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
    def test_gradient_without_broadcast_is_caffe2s(self, trans_a, trans_b):
        rng = np.random.default_rng(6)
        a = rng.standard_normal((2, 4, 3) if trans_a else (2, 3, 4))
        b = rng.standard_normal((2, 5, 4) if trans_b else (2, 4, 5))
        op_def = op("BatchMatMul", ["A", "B"], ["Y"], trans_a=trans_a, trans_b=trans_b)
        gy = rng.standard_normal((2, 3, 5))
        (da, db), grad_ops = gradients(op_def, [a, b], gy)
        assert [g.type for g in grad_ops] == ["BatchMatMul", "BatchMatMul"]

        def fn(x, y):
            return torch.matmul(x.transpose(-1, -2) if trans_a else x, y.transpose(-1, -2) if trans_b else y)

        ea, eb = torch_grads(fn, [a, b], gy)
        assert_close(da, ea, rtol=1e-10, atol=1e-12)
        assert_close(db, eb, rtol=1e-10, atol=1e-12)

    @settings(max_examples=15)
    @given(case=broadcast_case())
    def test_broadcast_gradient_matches_torch(self, case):
        """Caffe2 had no gradient for broadcast=1; nbcaffe's BatchMatMulGradient sums the
        partial products over the broadcast batch dims (torch autograd as the oracle)."""
        a, b, args = case
        a, b = a.astype(np.float64), b.astype(np.float64)
        y = np_batch_matmul(a, b, **args)
        gy = np.random.default_rng(7).standard_normal(y.shape)
        (da, db), grad_ops = gradients(op("BatchMatMul", ["A", "B"], ["Y"], **args), [a, b], gy)
        assert [g.type for g in grad_ops] == ["BatchMatMulGradient"]

        def fn(x, w):
            x2 = x.transpose(-1, -2) if args["trans_a"] and x.ndim > 1 else x
            w2 = w.transpose(-1, -2) if args["trans_b"] and w.ndim > 1 else w
            out = torch.matmul(x2, w2)
            return out.reshape(1) if out.ndim == 0 else out

        ea, eb = torch_grads(fn, [a, b], gy)
        assert_close(da, ea, rtol=1e-9, atol=1e-10)
        assert_close(db, eb, rtol=1e-9, atol=1e-10)


class TestElementwiseLinear:
    @pytest.mark.parametrize("shape,axis", [((3, 4), 1), ((2, 3, 4), 2), ((2, 3, 4), 1), ((2, 3), 0), ((2, 3, 4), -1)])
    def test_values(self, shape, axis):
        rng = np.random.default_rng(8)
        x = rng.standard_normal(shape).astype(F32)
        d = math.prod(shape[axis % len(shape):])
        w, b = rng.standard_normal(d).astype(F32), rng.standard_normal(d).astype(F32)
        y = run1("ElementwiseLinear", [x, w, b], axis=axis)
        expected = (x.reshape(-1, d).astype(np.float64) * w + b).reshape(shape)
        assert_close(y, expected, rtol=1e-6, atol=1e-6, dtype=F32)

    def test_gradient(self):
        rng = np.random.default_rng(9)
        x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal(12), rng.standard_normal(12)
        gy = rng.standard_normal((2, 3, 4))
        op_def = op("ElementwiseLinear", ["X", "w", "b"], ["Y"])
        (dx, dw, db), grad_ops = gradients(op_def, [x, w, b], gy, wrt=(0, 1, 2))
        assert [g.type for g in grad_ops] == ["ElementwiseLinearGradient"]
        assert list(grad_ops[0].input) == ["Y_grad", "X", "w"]
        g2, x2 = gy.reshape(2, 12), x.reshape(2, 12)
        assert_close(dx, (g2 * w).reshape(x.shape), rtol=1e-12)
        assert_close(dw, (g2 * x2).sum(axis=0), rtol=1e-12)
        assert_close(db, g2.sum(axis=0), rtol=1e-12)

    @pytest.mark.parametrize("w_shape,b_shape,fragment", [
        ((5,), (4,), "w (5,)"), ((4,), (2, 2), "b (2, 2)"), ((1, 4), (4,), "w (1, 4)")])
    def test_weight_shapes_must_be_d(self, w_shape, b_shape, fragment):
        inputs = [np.ones((3, 4), F32), np.ones(w_shape, F32), np.ones(b_shape, F32)]
        raises(errors.ShapeError, op("ElementwiseLinear", ["X", "w", "b"], ["Y"]), inputs, fragment, "D=4")


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestLinalgCuda:
    @pytest.mark.parametrize("a_shape,b_shape,args", [
        ((3, 4), (4, 5), {}),
        ((2, 17), (17, 3), {}),  # K spans two 16-wide tiles
        ((17, 2), (3, 17), {"trans_a": 1, "trans_b": 1}),
        ((2, 3, 4), (4, 2), {"axis_a": 2}),
        ((0, 3), (3, 2), {}),
        ((2, 0), (0, 3), {}),
    ])
    def test_matmul(self, dc, a_shape, b_shape, args):
        rng = np.random.default_rng(10)
        a, b = rng.standard_normal(a_shape).astype(F32), rng.standard_normal(b_shape).astype(F32)
        outs = check_devices(dc, op("MatMul", ["A", "B"], ["Y"], **args), [a, b])
        assert_close(outs[1][0], np_matmul2d(a, b, **args), rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize("a_shape,b_shape,args", [
        ((2, 3, 4), (2, 4, 2), {}),
        ((2, 1, 4, 3), (3, 2, 4), {"broadcast": 1, "trans_a": 1, "trans_b": 1}),
        ((4,), (2, 4, 3), {"broadcast": 1}),
        ((4,), (4,), {"broadcast": 1}),
    ])
    def test_batch_matmul_and_gradient(self, dc, a_shape, b_shape, args):
        rng = np.random.default_rng(11)
        a, b = rng.standard_normal(a_shape).astype(F32), rng.standard_normal(b_shape).astype(F32)
        op_def = op("BatchMatMul", ["A", "B"], ["Y"], **args)
        outs = check_devices(dc, op_def, [a, b])
        assert_close(outs[1][0], np_batch_matmul(a, b, **args), rtol=1e-4, atol=1e-5)
        gy = rng.standard_normal(outs[0][0].shape).astype(F32)
        cpu_grads, _ = gradients(op_def, [a, b], gy, dc[0])
        cuda_grads, _ = gradients(op_def, [a, b], gy, dc[1])
        for c, g in zip(cpu_grads, cuda_grads):
            assert_close(g, c, rtol=1e-4, atol=1e-5)

    def test_elementwise_linear_and_gradient(self, dc):
        rng = np.random.default_rng(12)
        x, w, b = (rng.standard_normal(s).astype(F32) for s in ((3, 2, 2), (4,), (4,)))
        op_def = op("ElementwiseLinear", ["X", "w", "b"], ["Y"])
        check_devices(dc, op_def, [x, w, b])
        gy = rng.standard_normal((3, 2, 2)).astype(F32)
        cpu_grads, _ = gradients(op_def, [x, w, b], gy, dc[0], wrt=(0, 1, 2))
        cuda_grads, _ = gradients(op_def, [x, w, b], gy, dc[1], wrt=(0, 1, 2))
        for c, g in zip(cpu_grads, cuda_grads):
            assert_close(g, c, rtol=1e-5, atol=1e-6)
