"""Edge cases of the normalization family: SpatialBN, InstanceNorm, LayerNorm, LRN.

Expected values come from NumPy written here (float64) and from PyTorch where the semantics
match (torch.nn.functional.batch_norm / instance_norm / layer_norm / local_response_norm and
torch.autograd for the gradients); where they differ (running variance, LRN's window for even
sizes) the test says so and checks Caffe2's rule with NumPy.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from nbcaffe import autograd, core, errors, scope, workspace
from nbcaffe.testing import check_devices, check_gradient
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is a test extra
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install -e '.[peer]')")
F32 = np.float32
F64 = np.float64


def rng(seed=0):
    return np.random.default_rng(seed)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def to_nhwc(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def grad_of(op_def, inputs, dy, wrt_outputs=(0,)):
    """Run op then its maker's gradient ops with dY = dy on the CPU; returns {input index: grad}."""
    g_output = [f"{name}_grad" if j in wrt_outputs else None for j, name in enumerate(op_def.output)]
    grad_ops, g_input = autograd.GradientRegistry.GetGradientForOp(op_def, g_output)
    with workspace.temp_workspace("_norm_grad_"):
        for name, value in zip(op_def.input, inputs):
            workspace.FeedBlob(name, value)
        workspace.RunOperatorOnce(op_def)
        workspace.FeedBlob(g_output[0], dy)
        for g in grad_ops:
            workspace.RunOperatorOnce(g)
        return {i: workspace.FetchBlob(name) for i, name in enumerate(g_input) if name is not None}


# ------------------------------------------------------------------------ NumPy references (independent)


def np_batch_norm(x, scale, bias, mean, var, eps, channel_axis=1):
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    x = x.astype(F64)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(shape)


def np_batch_stats(x, channel_axis=1):
    axes = tuple(i for i in range(x.ndim) if i != channel_axis)
    x = x.astype(F64)
    m = x.mean(axis=axes)
    v = x.var(axis=axes)  # biased (ddof=0)
    return m, v


def bn_op(outputs=("Y", "rm", "rv", "sm", "siv"), **args):
    return op("SpatialBN", ["X", "s", "b", "rm", "rv"], list(outputs), **args)


def bn_inputs(x_shape, c, seed=0, dtype=F32):
    r = rng(seed)
    return [(r.standard_normal(x_shape) * 1.5 + 0.3).astype(dtype), r.standard_normal(c).astype(dtype),
            r.standard_normal(c).astype(dtype), (r.standard_normal(c) * 0.1).astype(dtype),
            (r.random(c) + 0.5).astype(dtype)]


# ------------------------------------------------------------------------ SpatialBN


class TestSpatialBN:
    @pytest.mark.parametrize("shape", [(4, 3, 5, 2), (3, 2, 7), (2, 3, 2, 2, 3), (6, 4)])
    def test_training_outputs_vs_numpy(self, shape):
        c = shape[1]
        x, s, b, rm, rv = bn_inputs(shape, c, seed=1)
        y, rm2, rv2, sm, siv = run(bn_op(momentum=0.8, epsilon=1e-4), [x, s, b, rm, rv])
        m, v = np_batch_stats(x)
        assert_close(y, np_batch_norm(x, s, b, m, v, 1e-4), rtol=1e-5, atol=1e-5, dtype=F32)
        assert_close(rm2, rm * 0.8 + m * 0.2, rtol=1e-6, atol=1e-7)
        # Caffe2 (CPU) blends the *biased* batch variance into the running variance
        assert_close(rv2, rv * 0.8 + v * 0.2, rtol=1e-6, atol=1e-7)
        assert_close(sm, m, rtol=1e-6, atol=1e-7)
        assert_close(siv, 1 / np.sqrt(v + 1e-4), rtol=1e-6)

    @given(shape=nst.shapes(2, 5, 1, 4), order=st.sampled_from(["NCHW", "NHWC"]), seed=st.integers(0, 99))
    def test_any_shape_and_order_vs_numpy(self, shape, order, seed):
        axis = 1 if order == "NCHW" else len(shape) - 1
        c = shape[axis]
        x, s, b, rm, rv = bn_inputs(shape, c, seed=seed)
        y, rm2, rv2, sm, siv = run(bn_op(order=order, epsilon=1e-3), [x, s, b, rm, rv])
        m, v = np_batch_stats(x, axis)
        assert_close(y, np_batch_norm(x, s, b, m, v, 1e-3, axis), rtol=1e-4, atol=1e-4)
        assert_close(rm2, rm * 0.9 + m * 0.1, rtol=1e-5, atol=1e-6)
        assert_close(rv2, rv * 0.9 + v * 0.1, rtol=1e-5, atol=1e-6)
        assert_close(siv, 1 / np.sqrt(v + 1e-3), rtol=1e-5)
        y = run(bn_op(["Y"], order=order, is_test=1), [x, s, b, rm, rv])[0]
        assert_close(y, np_batch_norm(x, s, b, rm, rv, 1e-5, axis), rtol=1e-4, atol=1e-4)

    @needs_torch
    def test_training_vs_torch(self):
        x, s, b, rm, rv = bn_inputs((5, 3, 4, 4), 3, seed=2)
        y, rm2, rv2, _, _ = run(bn_op(momentum=0.9), [x, s, b, rm, rv])
        trm, trv = t(rm.copy()), t(rv.copy())
        # Caffe2's momentum weighs the old value; torch's weighs the new batch
        ty = F.batch_norm(t(x), trm, trv, t(s), t(b), training=True, momentum=0.1, eps=1e-5)
        assert_close(y, ty.numpy(), rtol=1e-4, atol=1e-5)
        assert_close(rm2, trm.numpy(), rtol=1e-5, atol=1e-6)
        # torch blends the unbiased variance: n / (n - 1) times the batch part of ours
        n = x.size // 3
        _, v = np_batch_stats(x)
        assert_close(trv.numpy() - rv * 0.9, (rv2 - rv * 0.9) * n / (n - 1), rtol=1e-4, atol=1e-6)
        assert not np.allclose(rv2, trv.numpy(), rtol=1e-5, atol=0)

    @needs_torch
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_inference_vs_torch(self, order):
        x, s, b, m, v = bn_inputs((3, 4, 3, 2), 4, seed=3)
        xin = x if order == "NCHW" else to_nhwc(x)
        y = run(bn_op(["Y"], is_test=1, order=order, epsilon=1e-3), [xin, s, b, m, v])[0]
        ty = F.batch_norm(t(x), t(m), t(v), t(s), t(b), training=False, eps=1e-3).numpy()
        assert_close(y, ty if order == "NCHW" else to_nhwc(ty), rtol=1e-5, atol=1e-5)

    def test_nhwc_matches_nchw(self):
        x, s, b, rm, rv = bn_inputs((2, 5, 3, 4), 5, seed=4)
        nchw = run(bn_op(), [x, s, b, rm, rv])
        nhwc = run(bn_op(order="NHWC"), [to_nhwc(x), s, b, rm, rv])
        assert_close(to_nhwc(nchw[0]), nhwc[0], rtol=1e-5, atol=1e-6)
        for a, e in zip(nchw[1:], nhwc[1:]):
            assert_close(a, e, rtol=1e-6, atol=1e-7)

    def test_running_stats_accumulate_in_place_over_runs(self):
        x, s, b, rm, rv = bn_inputs((4, 2, 3), 2, seed=5)
        net = core.Net("bn_runs")
        net.SpatialBN(["X", "s", "b", "rm", "rv"], ["Y", "rm", "rv", "sm", "siv"], momentum=0.5)
        for name, value in zip(["X", "s", "b", "rm", "rv"], [x, s, b, rm, rv]):
            workspace.FeedBlob(name, value)
        workspace.CreateNet(net)
        m, v = np_batch_stats(x)
        exp_m, exp_v = rm.astype(F64), rv.astype(F64)
        for _ in range(3):
            workspace.RunNet("bn_runs")
            exp_m, exp_v = exp_m * 0.5 + m * 0.5, exp_v * 0.5 + v * 0.5
        assert_close(workspace.FetchBlob("rm"), exp_m, rtol=1e-6, atol=1e-7)
        assert_close(workspace.FetchBlob("rv"), exp_v, rtol=1e-6, atol=1e-7)

    def test_y_in_place_of_x(self):
        x, s, b, rm, rv = bn_inputs((3, 2, 4), 2, seed=6)
        y = run(op("SpatialBN", ["X", "s", "b", "rm", "rv"], ["X", "rm", "rv", "sm", "siv"]), [x, s, b, rm, rv])[0]
        m, v = np_batch_stats(x)
        assert_close(y, np_batch_norm(x, s, b, m, v, 1e-5), rtol=1e-5, atol=1e-5)

    def test_large_mean_keeps_precision(self):
        r = rng(7)
        x = (1000.0 + r.standard_normal((8, 2, 16)) * 0.01).astype(F32)
        s, b = np.ones(2, F32), np.zeros(2, F32)
        y = run(bn_op(epsilon=1e-8), [x, s, b, np.zeros(2, F32), np.ones(2, F32)])[0]
        m, v = np_batch_stats(x)
        expected = np_batch_norm(x, s, b, m, v, 1e-8)
        assert_close(y, expected, rtol=1e-3, atol=1e-3)
        assert abs(float(y.std()) - 1.0) < 1e-3

    def test_empty_batch_leaves_running_stats(self):
        x = np.zeros((0, 3, 2, 2), F32)
        _, s, b, rm, rv = bn_inputs((1, 3), 3, seed=8)
        y, rm2, rv2, sm, siv = run(bn_op(), [x, s, b, rm, rv])
        assert y.shape == (0, 3, 2, 2)
        np.testing.assert_array_equal(rm2, rm)
        np.testing.assert_array_equal(rv2, rv)
        np.testing.assert_array_equal(sm, np.zeros(3, F32))
        np.testing.assert_array_equal(siv, np.zeros(3, F32))

    @needs_torch
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_training_gradient_vs_torch(self, order):
        x, s, b, rm, rv = bn_inputs((3, 4, 2, 3), 4, seed=9, dtype=F64)
        dy = rng(10).standard_normal(x.shape)
        xin, dyin = (x, dy) if order == "NCHW" else (to_nhwc(x), to_nhwc(dy))
        g = grad_of(bn_op(order=order), [xin, s, b, rm, rv], dyin)
        assert set(g) == {0, 1, 2}
        tx, ts, tb = (t(a.copy()).requires_grad_() for a in (x, s, b))
        F.batch_norm(tx, t(rm.copy()), t(rv.copy()), ts, tb, training=True, eps=1e-5).backward(t(dy))
        tdx = tx.grad.numpy()
        assert_close(g[0], tdx if order == "NCHW" else to_nhwc(tdx), rtol=1e-9, atol=1e-10)
        assert_close(g[1], ts.grad.numpy(), rtol=1e-9, atol=1e-10)
        assert_close(g[2], tb.grad.numpy(), rtol=1e-9, atol=1e-10)

    @needs_torch
    def test_inference_gradient_treats_statistics_as_constants(self):
        x, s, b, m, v = bn_inputs((3, 2, 5), 2, seed=11, dtype=F64)
        dy = rng(12).standard_normal(x.shape)
        g = grad_of(bn_op(["Y"], is_test=1, epsilon=1e-3), [x, s, b, m, v], dy)
        tx, ts, tb = (t(a.copy()).requires_grad_() for a in (x, s, b))
        F.batch_norm(tx, t(m), t(v), ts, tb, training=False, eps=1e-3).backward(t(dy))
        assert_close(g[0], tx.grad.numpy(), rtol=1e-10, atol=1e-12)
        assert_close(g[1], ts.grad.numpy(), rtol=1e-10, atol=1e-12)
        assert_close(g[2], tb.grad.numpy(), rtol=1e-10, atol=1e-12)

    def test_gradient_maker_follows_caffe2(self):
        train = bn_op()
        ops, g_in = autograd.GradientRegistry.GetGradientForOp(train, ["Y_grad", None, None, None, None])
        assert [o.type for o in ops] == ["SpatialBNGradient"]
        assert list(ops[0].input) == ["X", "s", "Y_grad", "sm", "siv"]
        assert list(ops[0].output) == ["X_grad", "s_grad", "b_grad"]
        assert g_in == ["X_grad", "s_grad", "b_grad", None, None]
        test = bn_op(["Y"], is_test=1)
        ops, _ = autograd.GradientRegistry.GetGradientForOp(test, ["Y_grad"])
        assert list(ops[0].input) == ["X", "s", "Y_grad", "rm", "rv"]

    @pytest.mark.parametrize("args,outputs,exc,fragment", [
        ({"is_test": 1}, ("Y", "rm", "rv", "sm", "siv"), errors.SchemaError, "is_test=1 produces 1 output"),
        ({}, ("Y",), errors.SchemaError, "produces 5 outputs"),
        ({"num_batches": 2}, ("Y", "rm", "rv", "sm", "siv"), errors.ArgumentError, "not supported"),
        ({"order": "NWHC"}, ("Y", "rm", "rv", "sm", "siv"), errors.ArgumentError, "'NCHW' or 'NHWC'"),
        ({"epsilon": 0.0}, ("Y", "rm", "rv", "sm", "siv"), errors.ArgumentError, "epsilon must be > 0"),
        ({"momentum": 1.5}, ("Y", "rm", "rv", "sm", "siv"), errors.ArgumentError, "momentum must be in [0, 1]"),
        ({}, ("Y", "mean2", "rv", "sm", "siv"), errors.SchemaError, "must be the same blob as input 3"),
    ])
    def test_argument_and_output_errors(self, args, outputs, exc, fragment):
        raises(exc, bn_op(outputs, **args), bn_inputs((2, 3, 2), 3), fragment)

    def test_shape_errors_name_the_shapes(self):
        x, s, b, rm, rv = bn_inputs((2, 3, 4), 3)
        raises(errors.ShapeError, bn_op(), [x, s[:2], b, rm, rv], "scale (2,)", "C=3", "(2, 3, 4)")
        raises(errors.ShapeError, bn_op(order="NHWC"), [x, s, b, rm, rv], "C=4")
        raises(errors.ShapeError, bn_op(), [x.astype(np.int32), s, b, rm, rv], "floating point")
        raises(errors.ShapeError, bn_op(), [x[0, 0], s, b, rm, rv], "at least 2-D")
        g = op("SpatialBNGradient", ["X", "s", "dY", "m", "r"], ["dX", "ds", "db"])
        raises(errors.ShapeError, g, [x, s, x[:1], rm, rv], "dY (1, 3, 4)", "(2, 3, 4)")

    @pytest.mark.cuda
    @pytest.mark.parametrize("shape,order", [((3, 10, 2, 3), "NCHW"), ((4, 2, 3, 5), "NHWC"), ((2, 3, 17), "NCHW")])
    def test_cuda_training_and_gradient(self, dc, shape, order):
        c = shape[1] if order == "NCHW" else shape[-1]
        inputs = bn_inputs(shape, c, seed=13)
        check_devices(dc, bn_op(order=order), inputs)
        check_devices(dc, bn_op(["Y"], order=order, is_test=1), inputs)
        dy = rng(14).standard_normal(shape).astype(F32)
        sm, siv = run(bn_op(order=order), inputs)[3:]
        grad = op("SpatialBNGradient", ["X", "s", "dY", "sm", "siv"], ["dX", "ds", "db"], order=order)
        check_devices(dc, grad, [inputs[0], inputs[1], dy, sm, siv], atol=1e-4)
        frozen = op("SpatialBNGradient", ["X", "s", "dY", "m", "v"], ["dX", "ds", "db"], order=order, is_test=1)
        check_devices(dc, frozen, [inputs[0], inputs[1], dy, inputs[3], inputs[4]], atol=1e-4)

    @pytest.mark.cuda
    def test_cuda_running_stats_update_on_device(self, dc):
        x, s, b, rm, rv = bn_inputs((3, 2, 4), 2, seed=15)
        cuda = dc[1]
        with workspace.temp_workspace("_bn_cuda_"):
            for name, value in zip(["X", "s", "b", "rm", "rv"], [x, s, b, rm, rv]):
                workspace.FeedBlob(name, value, cuda)
            workspace.RunOperatorOnce(bn_op(device_option=cuda, momentum=0.25))
            m, v = np_batch_stats(x)
            assert_close(workspace.FetchBlob("rm"), rm * 0.25 + m * 0.75, rtol=1e-5, atol=1e-6)
            assert_close(workspace.FetchBlob("rv"), rv * 0.25 + v * 0.75, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ InstanceNorm


def np_instance_norm(x, scale, bias, eps):
    """NCHW reference: statistics per (n, c) over the trailing axes."""
    axes = tuple(range(2, x.ndim))
    x = x.astype(F64)
    m = x.mean(axis=axes, keepdims=True)
    v = x.var(axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - m) / np.sqrt(v + eps) * scale.reshape(shape) + bias.reshape(shape)
    return y, m.reshape(x.shape[:2]), (1 / np.sqrt(v + eps)).reshape(x.shape[:2])


def in_op(outputs=("Y", "sm", "siv"), inputs=("X", "s", "b"), **args):
    return op("InstanceNorm", list(inputs), list(outputs), **args)


class TestInstanceNorm:
    @pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 6), (1, 4, 2, 2, 2)])
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_outputs_vs_numpy(self, shape, order):
        r = rng(20)
        x = (r.standard_normal(shape) * 2 - 1).astype(F32)
        s, b = r.standard_normal(shape[1]).astype(F32), r.standard_normal(shape[1]).astype(F32)
        y, sm, siv = run(in_op(order=order, epsilon=1e-3), [x if order == "NCHW" else to_nhwc(x), s, b])
        ey, em, einv = np_instance_norm(x, s, b, 1e-3)
        assert_close(y, ey if order == "NCHW" else to_nhwc(ey), rtol=1e-5, atol=1e-5, dtype=F32)
        assert_close(sm, em, rtol=1e-5, atol=1e-6)
        assert_close(siv, einv, rtol=1e-5)

    @needs_torch
    def test_vs_torch(self):
        r = rng(21)
        x = r.standard_normal((3, 4, 5, 2)).astype(F32)
        s, b = r.standard_normal(4).astype(F32), r.standard_normal(4).astype(F32)
        y = run(in_op(["Y"]), [x, s, b])[0]
        assert_close(y, F.instance_norm(t(x), weight=t(s), bias=t(b), eps=1e-5).numpy(), rtol=1e-4, atol=1e-5)

    def test_in_place_both_orders(self):
        r = rng(22)
        x = r.standard_normal((2, 3, 4)).astype(F32)
        s, b = np.full(3, 2.0, F32), np.full(3, 0.5, F32)
        ey = np_instance_norm(x, s, b, 1e-5)[0]
        y = run(in_op(["X"]), [x, s, b])[0]
        assert_close(y, ey, rtol=1e-5, atol=1e-5)
        y = run(in_op(["X"], order="NHWC"), [to_nhwc(x), s, b])[0]
        assert_close(y, to_nhwc(ey), rtol=1e-5, atol=1e-5)

    @needs_torch
    @pytest.mark.parametrize("n_outputs", [1, 2, 3])
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_gradient_vs_torch(self, n_outputs, order):
        r = rng(23)
        x = r.standard_normal((3, 2, 3, 4))
        s, b = r.standard_normal(2), r.standard_normal(2)
        dy = r.standard_normal(x.shape)
        fwd = in_op(["Y", "sm", "siv"][:n_outputs], order=order)
        xin, dyin = (x, dy) if order == "NCHW" else (to_nhwc(x), to_nhwc(dy))
        g = grad_of(fwd, [xin, s, b], dyin)
        tx, ts, tb = (t(a.copy()).requires_grad_() for a in (x, s, b))
        F.instance_norm(tx, weight=ts, bias=tb, eps=1e-5).backward(t(dy))
        tdx = tx.grad.numpy()
        assert_close(g[0], tdx if order == "NCHW" else to_nhwc(tdx), rtol=1e-8, atol=1e-10)
        assert_close(g[1], ts.grad.numpy(), rtol=1e-8, atol=1e-10)
        assert_close(g[2], tb.grad.numpy(), rtol=1e-8, atol=1e-10)

    def test_gradient_maker_passes_saved_statistics(self):
        for n_out, extra in [(1, []), (2, ["sm"]), (3, ["sm", "siv"])]:
            ops, g_in = autograd.GradientRegistry.GetGradientForOp(
                in_op(["Y", "sm", "siv"][:n_out]), ["Y_grad"] + [None] * (n_out - 1))
            assert list(ops[0].input) == ["X", "s", "b", "Y_grad"] + extra
            assert g_in == ["X_grad", "s_grad", "b_grad"]

    def test_errors(self):
        x = np.ones((2, 3, 4), F32)
        raises(errors.ShapeError, in_op(), [x, np.ones(2, F32), np.ones(3, F32)], "scale (2,)", "C=3")
        raises(errors.ShapeError, in_op(), [x[0], np.ones(3, F32), np.ones(3, F32)], "at least 3-D")
        raises(errors.ArgumentError, in_op(epsilon=-1.0), [x, np.ones(3, F32), np.ones(3, F32)], "epsilon")
        g = op("InstanceNormGradient", ["X", "s", "b", "dY", "m", "r"], ["dX", "ds", "db"])
        raises(errors.ShapeError, g, [x, np.ones(3, F32), np.ones(3, F32), x, np.ones((2, 2), F32),
                                      np.ones((2, 3), F32)], "saved_mean (2, 2)", "N*C=6")

    @pytest.mark.cuda
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_cuda(self, dc, order):
        r = rng(24)
        x = r.standard_normal((2, 3, 4, 5)).astype(F32)
        x = x if order == "NCHW" else to_nhwc(x)
        s, b = r.standard_normal(3).astype(F32), r.standard_normal(3).astype(F32)
        check_devices(dc, in_op(order=order), [x, s, b])
        check_devices(dc, in_op(["Y"], order=order), [x, s, b])
        dy = r.standard_normal(x.shape).astype(F32)
        _, sm, siv = run(in_op(order=order), [x, s, b])
        full = op("InstanceNormGradient", ["X", "s", "b", "dY", "sm", "siv"], ["dX", "ds", "db"], order=order)
        check_devices(dc, full, [x, s, b, dy, sm, siv], atol=1e-4)
        recompute = op("InstanceNormGradient", ["X", "s", "b", "dY"], ["dX", "ds", "db"], order=order)
        check_devices(dc, recompute, [x, s, b, dy], atol=1e-4)


# ------------------------------------------------------------------------ LayerNorm


def np_layer_norm(x, axis, eps, gamma=None, beta=None):
    axes = tuple(range(axis, x.ndim))
    x = x.astype(F64)
    m = x.mean(axis=axes, keepdims=True)
    sd = np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    y = (x - m) / sd
    if gamma is not None:
        y = y * gamma.reshape(x.shape[axis:]) + beta.reshape(x.shape[axis:])
    stat = x.shape[:axis] + (1,)
    return y, m.reshape(stat), sd.reshape(stat)


class TestLayerNorm:
    @pytest.mark.parametrize("shape,axis", [((4, 6), 1), ((2, 3, 4), 1), ((2, 3, 4), 2), ((2, 3, 4), -1),
                                            ((2, 3, 4, 2), -3)])
    def test_outputs_vs_numpy(self, shape, axis):
        x = (rng(30).standard_normal(shape) * 3 + 2).astype(F32)
        y, mean, std = run(op("LayerNorm", ["X"], ["Y", "m", "sd"], axis=axis, epsilon=1e-3), [x])
        canonical = axis % len(shape)
        ey, em, esd = np_layer_norm(x, canonical, 1e-3)
        assert_close(y, ey, rtol=1e-5, atol=1e-5, dtype=F32)
        assert_close(mean, em, rtol=1e-5, atol=1e-6)
        assert_close(std, esd, rtol=1e-5)
        assert mean.shape == shape[:canonical] + (1,)

    @given(shape=nst.shapes(2, 4, 1, 4), data=st.data())
    def test_any_shape_and_axis_vs_numpy(self, shape, data):
        axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
        canonical = axis % len(shape)
        r = rng(canonical)
        x = (r.standard_normal(shape) * 2).astype(F32)
        n = int(np.prod(shape[canonical:]))
        gamma, beta = r.standard_normal(n).astype(F32), r.standard_normal(n).astype(F32)
        y, mean, std = run(op("LayerNorm", ["X", "g", "b"], ["Y", "m", "sd"], axis=axis, elementwise_affine=1),
                           [x, gamma, beta])
        ey, em, esd = np_layer_norm(x, canonical, 1e-5, gamma, beta)
        assert_close(y, ey, rtol=1e-4, atol=1e-4)
        assert_close(mean, em, rtol=1e-5, atol=1e-6)
        assert_close(std, esd, rtol=1e-5)

    @needs_torch
    def test_vs_torch_with_affine(self):
        r = rng(31)
        x = r.standard_normal((3, 4, 5)).astype(F32)
        gamma, beta = r.standard_normal((4, 5)).astype(F32), r.standard_normal(20).astype(F32)
        y = run(op("LayerNorm", ["X", "g", "b"], ["Y", "m", "sd"], elementwise_affine=1), [x, gamma, beta])[0]
        ty = F.layer_norm(t(x), (4, 5), weight=t(gamma), bias=t(beta.reshape(4, 5)), eps=1e-5)
        assert_close(y, ty.numpy(), rtol=1e-4, atol=1e-5)

    @needs_torch
    @pytest.mark.parametrize("affine", [False, True])
    def test_gradient_vs_torch(self, affine):
        r = rng(32)
        x = r.standard_normal((3, 2, 5))
        dy = r.standard_normal(x.shape)
        gamma, beta = r.standard_normal(10), r.standard_normal(10)
        inputs = [x, gamma, beta] if affine else [x]
        fwd = op("LayerNorm", ["X", "g", "b"][:len(inputs)], ["Y", "m", "sd"], elementwise_affine=int(affine),
                 epsilon=1e-2)
        g = grad_of(fwd, inputs, dy)
        tx = t(x.copy()).requires_grad_()
        tg = t(gamma.reshape(2, 5).copy()).requires_grad_() if affine else None
        tb = t(beta.reshape(2, 5).copy()).requires_grad_() if affine else None
        F.layer_norm(tx, (2, 5), weight=tg, bias=tb, eps=1e-2).backward(t(dy))
        assert_close(g[0], tx.grad.numpy(), rtol=1e-8, atol=1e-10)
        if affine:
            assert_close(g[1], tg.grad.numpy().reshape(10), rtol=1e-8, atol=1e-10)
            assert_close(g[2], tb.grad.numpy().reshape(10), rtol=1e-8, atol=1e-10)
        else:
            assert set(g) == {0}

    def test_gradient_maker_follows_caffe2(self):
        plain = op("LayerNorm", ["X"], ["Y", "m", "sd"])
        ops, g_in = autograd.GradientRegistry.GetGradientForOp(plain, ["Y_grad", None, None])
        assert list(ops[0].input) == ["Y_grad", "Y", "m", "sd", "X"] and list(ops[0].output) == ["X_grad"]
        affine = op("LayerNorm", ["X", "g", "b"], ["Y", "m", "sd"], elementwise_affine=1)
        ops, g_in = autograd.GradientRegistry.GetGradientForOp(affine, ["Y_grad", None, None])
        assert list(ops[0].input) == ["Y_grad", "Y", "m", "sd", "X", "g"]
        assert g_in == ["X_grad", "g_grad", "b_grad"]

    def test_errors(self):
        x = np.ones((2, 3), F32)
        raises(errors.ShapeError, op("LayerNorm", ["X"], ["Y", "m", "sd"]), [x[0]], "at least 2 dims")
        raises(errors.ShapeError, op("LayerNorm", ["X"], ["Y", "m", "sd"], axis=2), [x], "axis=2")
        raises(errors.SchemaError, op("LayerNorm", ["X", "g", "b"], ["Y", "m", "sd"]), [x, x[0], x[0]],
               "only read with elementwise_affine=1")
        raises(errors.SchemaError, op("LayerNorm", ["X"], ["Y", "m", "sd"], elementwise_affine=1), [x],
               "needs 3 inputs")
        raises(errors.ShapeError, op("LayerNorm", ["X", "g", "b"], ["Y", "m", "sd"], elementwise_affine=1),
               [x, np.ones(2, F32), np.ones(3, F32)], "gamma (2,)", "3 values")

    def test_constant_rows(self):
        """Zero variance: std = sqrt(epsilon), Y = 0 (no NaN)."""
        x = np.full((2, 4), 3.0, F32)
        y, m, sd = run(op("LayerNorm", ["X"], ["Y", "m", "sd"], epsilon=1e-4), [x])
        np.testing.assert_array_equal(y, np.zeros((2, 4), F32))
        assert_close(sd, np.full((2, 1), 1e-2), rtol=1e-6)

    @pytest.mark.cuda
    @pytest.mark.parametrize("shape,axis,affine", [((3, 20), 1, False), ((2, 3, 7), 1, True), ((5, 2, 3), 2, True)])
    def test_cuda(self, dc, shape, axis, affine):
        r = rng(33)
        x = r.standard_normal(shape).astype(F32)
        n = int(np.prod(shape[axis:]))
        inputs = [x, r.standard_normal(n).astype(F32), r.standard_normal(n).astype(F32)] if affine else [x]
        names = ["X", "g", "b"][:len(inputs)]
        fwd = op("LayerNorm", names, ["Y", "m", "sd"], axis=axis, elementwise_affine=int(affine))
        check_devices(dc, fwd, inputs)
        y, m, sd = run(fwd, inputs)
        dy = r.standard_normal(shape).astype(F32)
        grad_inputs = [dy, y, m, sd, x] + ([inputs[1]] if affine else [])
        grad = op("LayerNormGradient", ["dY", "Y", "m", "sd", "X", "g"][:len(grad_inputs)],
                  ["dX", "dg", "db"][:3 if affine else 1], axis=axis, elementwise_affine=int(affine))
        check_devices(dc, grad, grad_inputs, atol=1e-4)


# ------------------------------------------------------------------------ LRN


def np_lrn(x, size, alpha, beta, bias):
    """Caffe2's LRN on NCHW x: window [c - (size-1)//2, c + size//2], alpha divided by size."""
    x = x.astype(F64)
    c = x.shape[1]
    pre = (size - 1) // 2
    scale = np.empty_like(x)
    for k in range(c):
        lo, hi = max(0, k - pre), min(c, k - pre + size)
        scale[:, k] = bias + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
    return x * scale ** -beta, scale


def lrn_op(outputs=("Y", "scale"), **args):
    return op("LRN", ["X"], list(outputs), **args)


class TestLRN:
    @pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
    def test_vs_numpy_every_size(self, size):
        x = rng(40).standard_normal((2, 6, 3, 2)).astype(F32)
        y, scale = run(lrn_op(size=size, alpha=0.7, beta=0.6, bias=1.3), [x])
        ey, es = np_lrn(x, size, 0.7, 0.6, 1.3)
        assert_close(y, ey, rtol=1e-5, atol=1e-6, dtype=F32)
        assert_close(scale, es, rtol=1e-5)

    @needs_torch
    @pytest.mark.parametrize("size,beta", [(3, 0.75), (5, 0.5), (5, 1.3)])
    def test_vs_torch_odd_sizes(self, size, beta):
        """torch.nn.functional.local_response_norm also divides alpha by size (k = bias); for even
        sizes torch centres the window one channel lower than Caffe2, so only odd sizes compare."""
        x = rng(41).standard_normal((2, 7, 4, 3)).astype(F32)
        y = run(lrn_op(["Y"], size=size, alpha=0.9, beta=beta, bias=2.0), [x])[0]
        ty = F.local_response_norm(t(x), size, alpha=0.9, beta=beta, k=2.0).numpy()
        assert_close(y, ty, rtol=1e-5, atol=1e-6)

    def test_nhwc_matches_nchw(self):
        x = rng(42).standard_normal((2, 5, 3, 4)).astype(F32)
        nchw = run(lrn_op(size=3, alpha=0.5, beta=0.75), [x])
        nhwc = run(lrn_op(size=3, alpha=0.5, beta=0.75, order="NHWC"), [to_nhwc(x)])
        assert_close(to_nhwc(nchw[0]), nhwc[0], rtol=1e-6, atol=1e-7)
        assert_close(to_nhwc(nchw[1]), nhwc[1], rtol=1e-6)

    @needs_torch
    @pytest.mark.parametrize("n_outputs", [1, 2])
    def test_gradient_vs_torch(self, n_outputs):
        r = rng(43)
        x = r.standard_normal((2, 6, 3, 2))
        dy = r.standard_normal(x.shape)
        # alpha exact in float32 (Argument.f is a float32 field; 0.8 would differ by 1e-8 relative)
        g = grad_of(lrn_op(["Y", "scale"][:n_outputs], size=5, alpha=0.75, beta=0.75, bias=1.5), [x], dy)
        tx = t(x.copy()).requires_grad_()
        F.local_response_norm(tx, 5, alpha=0.75, beta=0.75, k=1.5).backward(t(dy))
        assert_close(g[0], tx.grad.numpy(), rtol=1e-9, atol=1e-11)

    def test_gradient_maker_uses_scale_when_available(self):
        ops, _ = autograd.GradientRegistry.GetGradientForOp(lrn_op(size=3), ["Y_grad", None])
        assert list(ops[0].input) == ["X", "Y", "scale", "Y_grad"]
        ops, _ = autograd.GradientRegistry.GetGradientForOp(lrn_op(["Y"], size=3), ["Y_grad"])
        assert list(ops[0].input) == ["X", "Y", "Y_grad"]  # Caffe2's 3-input form

    @pytest.mark.parametrize("size", [2, 3])
    def test_even_and_odd_window_gradient_vs_finite_differences(self, size):
        x = rng(44).standard_normal((2, 5, 3))
        for order, xin in (("NCHW", x), ("NHWC", to_nhwc(x))):
            check_gradient(CPU_OPTION, lrn_op(["Y"], size=size, alpha=0.6, beta=1.1, bias=1.2, order=order),
                           [xin], 0, [0])

    def test_errors(self):
        x = np.ones((2, 3, 2, 2), F32)
        raises(errors.ArgumentError, op("LRN", ["X"], ["Y"]), [x], "required argument 'size'")
        raises(errors.ArgumentError, lrn_op(size=0), [x], "size must be >= 1")
        raises(errors.ShapeError, lrn_op(size=3), [x.astype(np.int64)], "floating point")
        g = op("LRNGradient", ["X", "Y", "dY"], ["dX"], size=3)
        raises(errors.ShapeError, g, [x, x, x[:1]], "dY (1, 3, 2, 2)")

    @pytest.mark.cuda
    @pytest.mark.parametrize("order,size,beta", [("NCHW", 3, 0.75), ("NHWC", 5, 0.6), ("NCHW", 2, 1.0)])
    def test_cuda(self, dc, order, size, beta):
        r = rng(45)
        x = r.standard_normal((2, 6, 3, 2)).astype(F32)
        x = x if order == "NCHW" else to_nhwc(x)
        args = dict(size=size, alpha=0.5, beta=beta, bias=1.2, order=order)
        check_devices(dc, lrn_op(**args), [x])
        y, scale = run(lrn_op(**args), [x])
        dy = r.standard_normal(x.shape).astype(F32)
        check_devices(dc, op("LRNGradient", ["X", "Y", "S", "dY"], ["dX"], **args), [x, y, scale, dy], atol=1e-5)
        check_devices(dc, op("LRNGradient", ["X", "Y", "dY"], ["dX"], **args), [x, y, dy], atol=1e-5)


@pytest.mark.cuda
def test_cuda_net_with_every_normalization_op(dc):
    """A small training net on CUDA gives the CPU's numbers (forward, running stats, backward)."""
    r = rng(50)
    feeds = {"X": r.standard_normal((2, 4, 3, 3)).astype(F32), "s": r.standard_normal(4).astype(F32),
             "b": r.standard_normal(4).astype(F32), "rm": np.zeros(4, F32), "rv": np.ones(4, F32)}
    results = []
    for device in dc:
        with workspace.temp_workspace(f"_norm_net_{device.device_type}_"), scope.DeviceScope(device):
            net = core.Net(f"norm_net_{device.device_type}")
            net.LRN(["X"], ["l", "l_scale"], size=3, alpha=0.1, beta=0.75)
            net.SpatialBN(["l", "s", "b", "rm", "rv"], ["bn", "rm", "rv", "sm", "siv"])
            net.InstanceNorm(["bn", "s", "b"], ["in", "in_m", "in_r"])
            net.LayerNorm(["in"], ["ln", "ln_m", "ln_s"])
            net.SumSqrElements(["ln"], ["loss"])
            net.AddGradientOperators(["loss"])
            for name, value in feeds.items():
                workspace.FeedBlob(name, value, device)
            workspace.RunNetOnce(net)
            results.append({n: workspace.FetchBlob(n) for n in ("ln", "rm", "rv", "X_grad", "s_grad", "b_grad")})
    for name in results[0]:
        assert_close(results[1][name], results[0][name], rtol=1e-4, atol=1e-4)
