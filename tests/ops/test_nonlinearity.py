"""Edge cases of PRelu and Softplus.

Expected values: NumPy written here in float64 and torch (F.prelu, F.softplus, autograd).
PRelu follows Caffe2: slope of 1 value (shared) or C (channel dim 1 for NCHW, last for NHWC);
dX = dY for X > 0 else slope * dY, dslope sums dY * X over X <= 0.  Softplus = log(1 + exp(X)).
"""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from nbcaffe import autograd, errors, workspace
from nbcaffe.testing import check_devices
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run, run1

F32 = np.float32


def run_gradient(op_def, inputs, gy, device_option=CPU_OPTION):
    """Forward op then its gradient ops; returns (forward output, [input gradients])."""
    grad_ops, g_input = autograd.GradientRegistry.GetGradientForOp(op_def, [op_def.output[0] + "_grad"])
    with workspace.temp_workspace("_nonlinearity_grad_"):
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
        return workspace.FetchBlob(op_def.output[0]), [workspace.FetchBlob(g) if g else None for g in g_input]


def np_prelu(x, slope, order="NCHW"):
    x = x.astype(np.float64)
    w = slope.astype(np.float64).reshape(-1)
    if w.size > 1:
        w = w.reshape((1, -1) + (1,) * (x.ndim - 2)) if order == "NCHW" else w
    return np.where(x > 0, x, x * w)


class TestPRelu:
    @pytest.mark.parametrize("shape,order,channels", [
        ((2, 3, 4, 5), "NCHW", 3), ((2, 4, 5, 3), "NHWC", 3), ((2, 3), "NCHW", 3), ((3, 2), "NHWC", 2),
        ((2, 3, 4), "NCHW", 1), ((7,), "NCHW", 1),
    ])
    def test_values(self, shape, order, channels):
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(F32)
        slope = rng.standard_normal(channels).astype(F32)
        assert_close(run1("PRelu", [x, slope], order=order), np_prelu(x, slope, order), dtype=F32)

    def test_matches_torch_prelu_and_its_gradients(self):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((3, 4, 2, 2))
        x[0, 0, 0, 0] = 0.0  # the kink: Caffe2 (and torch) take the slope branch at 0
        slope = rng.standard_normal(4)
        gy = rng.standard_normal(x.shape)
        y, (dx, dslope) = run_gradient(op("PRelu", ["X", "slope"], ["Y"]), [x, slope], gy)
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(slope, requires_grad=True)
        ty = F.prelu(tx, tw)
        ty.backward(torch.tensor(gy))
        assert_close(y, ty.detach().numpy(), rtol=1e-12)
        assert_close(dx, tx.grad.numpy(), rtol=1e-12)
        assert_close(dslope, tw.grad.numpy(), rtol=1e-10, atol=1e-12)
        assert dx[0, 0, 0, 0] == pytest.approx(slope[0] * gy[0, 0, 0, 0])

    def test_shared_and_nhwc_slope_gradients(self):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((2, 3, 4))
        gy = rng.standard_normal(x.shape)
        _, (dx, dslope) = run_gradient(op("PRelu", ["X", "slope"], ["Y"]), [x, np.array([0.3])], gy)
        assert dslope.shape == (1,)
        assert_close(dslope, [np.sum(np.where(x > 0, 0, gy * x))], rtol=1e-12)
        assert_close(dx, np.where(x > 0, gy, 0.3 * gy), rtol=1e-12)
        slope = rng.standard_normal(4)
        _, (dx, dslope) = run_gradient(op("PRelu", ["X", "slope"], ["Y"], order="NHWC"), [x, slope], gy)
        assert_close(dslope, np.where(x > 0, 0, gy * x).sum(axis=(0, 1)), rtol=1e-12)
        assert_close(dx, np.where(x > 0, gy, slope * gy), rtol=1e-12)

    def test_in_place(self):
        x = np.array([[-2.0, 3.0], [4.0, -1.0]], F32)
        out = run(op("PRelu", ["X", "slope"], ["X"]), [x.copy(), np.array([0.5, 0.25], F32)])[0]
        assert_close(out, [[-1.0, 3.0], [4.0, -0.25]], dtype=F32)

    def test_in_place_has_no_gradient(self):
        with pytest.raises(autograd.GradientError, match=r"\[PRelu\].*in place on 'X'"):
            autograd.backward_pass([op("PRelu", ["X", "slope"], ["X"]), op("SumElements", ["X"], ["loss"])],
                                   ["loss"])

    @pytest.mark.parametrize("x_shape,slope_shape,args,fragments", [
        ((2, 3, 4), (4,), {}, ["4 values", "C=3", "NCHW"]),
        ((2, 3, 4), (3,), {"order": "NHWC"}, ["C=4", "NHWC"]),
        ((6,), (3,), {}, ["rank >= 2"]),
    ])
    def test_slope_errors(self, x_shape, slope_shape, args, fragments):
        inputs = [np.ones(x_shape, F32), np.ones(slope_shape, F32)]
        raises(errors.ShapeError, op("PRelu", ["X", "slope"], ["Y"], **args), inputs, *fragments)

    def test_dtype_errors(self):
        raises(errors.ShapeError, op("PRelu", ["X", "slope"], ["Y"]), [np.ones((2, 2), F32), np.ones(1)],
               "float32", "float64")
        raises(errors.ShapeError, op("PRelu", ["X", "slope"], ["Y"]),
               [np.ones((2, 2), np.int32), np.ones(1, np.int32)], "floating point")


# the CPU switches from the numba loop to np.logaddexp at 256 elements: check both sides
SIZES = {"loop": (3, 5), "vector": (6, 50)}


def np_softplus(x):
    x = np.asarray(x, np.float64)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


class TestSoftplus:
    @pytest.mark.parametrize("path", SIZES)
    @given(data=st.data())
    def test_values(self, path, data):
        x = data.draw(hnp.arrays(F32, SIZES[path], elements=st.floats(-30, 30, width=32)))
        assert_close(run1("Softplus", [x]), np_softplus(x), rtol=2e-6, atol=1e-7, dtype=F32)

    @pytest.mark.parametrize("path", SIZES)
    def test_tails_do_not_overflow(self, path):
        x = np.zeros(SIZES[path], F32)
        x.flat[:6] = [100.0, 1000.0, -100.0, -1000.0, 88.8, -20.0]
        y = run1("Softplus", [x])
        assert np.all(np.isfinite(y))
        assert_close(y.flat[[0, 1, 4, 5]], [100.0, 1000.0, 88.8, np.log1p(np.exp(-20.0))], rtol=1e-6, atol=0)
        assert 0 < y.flat[2] < 1e-43 and y.flat[3] == 0.0  # exp(-100) is a float32 subnormal
        torch_y = F.softplus(torch.tensor(x.astype(np.float64))).numpy()  # linear above 20: 2e-9 off
        assert_close(y, torch_y, rtol=1e-6, atol=1e-30)

    @pytest.mark.parametrize("path", SIZES)
    def test_in_place(self, path):
        x = np.linspace(-5, 5, int(np.prod(SIZES[path])), dtype=F32).reshape(SIZES[path])
        out = run(op("Softplus", ["X"], ["X"]), [x.copy()])[0]
        assert_close(out, np_softplus(x), rtol=2e-6, atol=1e-7)

    def test_gradient_is_sigmoid_and_precise_in_the_tail(self):
        x = np.array([-30.0, -5.0, -1e-3, 0.0, 2.0, 40.0], F32)
        gy = np.array([1.0, 2.0, -1.0, 3.0, 0.5, 1.0], F32)
        y, (dx,) = run_gradient(op("Softplus", ["X"], ["Y"]), [x], gy)
        sigmoid = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
        # 1 - exp(-Y) would give 0 at X = -30 in float32 (Y = 9e-14); -expm1(-Y) keeps it
        assert_close(dx, gy * sigmoid, rtol=1e-5, atol=0)

    def test_gradient_matches_torch(self):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((4, 5)) * 3
        gy = rng.standard_normal(x.shape)
        _, (dx,) = run_gradient(op("Softplus", ["X"], ["Y"]), [x], gy)
        tx = torch.tensor(x, requires_grad=True)
        F.softplus(tx, threshold=1000).backward(torch.tensor(gy))
        assert_close(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-14)

    def test_integer_input_is_rejected(self):
        raises(errors.ShapeError, op("Softplus", ["X"], ["Y"]), [np.ones(3, np.int32)], "floating point")


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestNonlinearityCuda:
    @pytest.mark.parametrize("shape,slope,args", [
        ((2, 3, 2), [0.1, -0.2, 0.3], {}), ((2, 3), [0.25], {}), ((2, 2, 3), [0.1, 0.5, -0.3], {"order": "NHWC"}),
    ])
    def test_prelu_and_gradient(self, dc, shape, slope, args):
        rng = np.random.default_rng(4)
        x = rng.standard_normal(shape).astype(F32)
        x.flat[0] = 0.0
        w = np.array(slope, F32)
        op_def = op("PRelu", ["X", "slope"], ["Y"], **args)
        check_devices(dc, op_def, [x, w])
        gy = rng.standard_normal(shape).astype(F32)
        cpu = run_gradient(op_def, [x, w], gy, dc[0])
        gpu = run_gradient(op_def, [x, w], gy, dc[1])
        assert_close(gpu[0], cpu[0])
        for c, g in zip(cpu[1], gpu[1]):
            assert_close(g, c, rtol=1e-5, atol=1e-6)

    def test_softplus_and_gradient(self, dc):
        x = np.array([[-100.0, -20.0, -1.0, 0.0], [1e-3, 3.0, 20.0, 100.0]], F32)
        op_def = op("Softplus", ["X"], ["Y"])
        outs = check_devices(dc, op_def, [x], threshold=1e-6)
        assert_close(outs[1][0], np_softplus(x), rtol=1e-6, atol=1e-43)  # exp(-100): a float32 subnormal
        gy = np.ones_like(x)
        cpu = run_gradient(op_def, [x], gy, dc[0])
        gpu = run_gradient(op_def, [x], gy, dc[1])
        assert_close(gpu[1][0], cpu[1][0], rtol=1e-6, atol=0)

    @given(x=nst.tensor(1, 3, avoid=(0.0,), elements=st.floats(-3, 3, width=32)))
    def test_prelu_shared_hypothesis(self, x):
        check_devices(nst.device_options(), op("PRelu", ["X", "slope"], ["Y"]), [x, np.array([0.3], F32)])
