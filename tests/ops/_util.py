"""Small helpers shared by the per-family operator tests."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import autograd, core
from nbcaffe.devices import CPU, DeviceOption
from nbcaffe.testing import run_op

CPU_OPTION = DeviceOption(CPU)


def op(op_type, inputs, outputs, **args):
    return core.CreateOperator(op_type, inputs, outputs, **args)


def run(op_def, inputs, device_option=CPU_OPTION):
    """Host copies of the op's outputs after one run in a fresh workspace."""
    return run_op(device_option, op_def, inputs)


def run1(op_type, inputs, outputs=("Y",), device_option=CPU_OPTION, **args):
    """Run ``op_type`` on inputs named I0, I1, ... and return its first output."""
    names = [f"I{i}" for i in range(len(inputs))]
    return run(op(op_type, names, list(outputs), **args), inputs, device_option)[0]


def raises(exc_type, op_def, inputs, *fragments, device_option=CPU_OPTION):
    """Assert that running ``op_def`` raises ``exc_type`` whose message holds every fragment."""
    with pytest.raises(exc_type) as info:
        run(op_def, inputs, device_option)
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in error message:\n{text}"
    return info.value


def assert_close(actual, expected, rtol=1e-5, atol=1e-6, dtype=None):
    """Values close, shapes equal, and (when given) the exact dtype."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if dtype is not None:
        assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype} != {np.dtype(dtype)}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def run_named(op_type, inputs, n_out=1, **args):
    """Run ``op_type`` on inputs named i0, i1, ... into outputs o0, o1, ...; host outputs."""
    names = [f"i{k}" for k in range(len(inputs))]
    return run_op(CPU_OPTION, op(op_type, names, [f"o{j}" for j in range(n_out)], **args), inputs)


def nhwc(a):
    """NCHW -> NHWC, contiguous."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def nchw(a):
    """NHWC -> NCHW, contiguous."""
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


def grads_of(op_def, g_output):
    """(gradient ops, input gradient names) from the registered maker."""
    return autograd.GradientRegistry.GetGradientForOp(op_def, g_output)


def torch_grad(fn, x, dy):
    """d<fn(x), dy>/dx by torch autograd (float64)."""
    import torch  # a test extra: only the tests that call this need it

    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(t).backward(torch.tensor(dy, dtype=torch.float64))
    return t.grad.numpy()
