"""MVN (Caffe's mean-variance normalization) against NumPy written here, edge cases, CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import autograd, errors
from tests.ops._util import assert_close, op, raises, run, run1

F32 = np.float32


def caffe_mvn(x, across, normalize, eps):
    """Caffe's MVNLayer::Forward_cpu: biased variance, divide by sqrt(var) + eps."""
    lead = 1 if across else 2
    rows = x.reshape(int(np.prod(x.shape[:lead])), -1).astype(np.float64)
    out = rows - rows.mean(axis=1, keepdims=True)
    if normalize:
        out /= np.sqrt((out ** 2).mean(axis=1, keepdims=True)) + eps
    return out.reshape(x.shape)


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("eps", [1e-9, 0.1])
def test_matches_caffe_formula(across, normalize, eps):
    x = (np.random.default_rng(1).standard_normal((2, 3, 5, 7)) * 3 + 1).astype(F32)
    y = run1("MVN", [x], across_channels=int(across), normalize_variance=int(normalize), eps=eps)
    assert_close(y, caffe_mvn(x, across, normalize, eps), rtol=1e-5, atol=1e-6, dtype=F32)


def test_eps_is_added_to_the_std_not_the_variance():
    x = np.array([[[1.0, 3.0]]], F32)  # mean 2, std 1
    y = run1("MVN", [x], eps=0.5)
    assert_close(y, [[[-1 / 1.5, 1 / 1.5]]])  # sqrt(var + eps) would give 1/sqrt(1.5)


def test_float64_in_place_and_constant_rows():
    x = np.random.default_rng(2).standard_normal((3, 4, 6))
    x[1, 2] = 5.0  # a constant row normalises to 0, not NaN
    y = run(op("MVN", ["X"], ["X"], eps=1e-6), [x])[0]
    assert_close(y, caffe_mvn(x, False, True, 1e-6), rtol=1e-12, atol=1e-12, dtype=np.float64)
    assert np.all(y[1, 2] == 0)


def test_errors_name_the_problem():
    raises(errors.ArgumentError, op("MVN", ["X"], ["Y"], order="NHWC"), [np.zeros((1, 2, 2, 2), F32)], "NCHW")
    raises(errors.ShapeError, op("MVN", ["X"], ["Y"]), [np.zeros((4,), F32)], "(4,)", "at least 2 dims")
    raises(errors.ShapeError, op("MVN", ["X"], ["Y"]), [np.zeros((2, 3), np.int32)], "floating")
    raises(errors.ArgumentError, op("MVN", ["X"], ["Y"], eps=-1.0), [np.zeros((2, 3), F32)], "eps")


def test_gradient_matches_finite_differences_in_float64():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 3, 4))
    dy = rng.standard_normal(x.shape)
    for across in (0, 1):
        for normalize in (0, 1):
            fwd = op("MVN", ["X"], ["Y"], across_channels=across, normalize_variance=normalize, eps=0.01)
            grads, _ = autograd.GradientRegistry.GetGradientForOp(fwd, ["Y_grad"])
            dx = run(grads[0], [x, dy])[0]
            numeric = np.zeros_like(x)
            h = 1e-6
            for i in range(x.size):
                e = np.zeros(x.size)
                e[i] = h
                plus = caffe_mvn(x + e.reshape(x.shape), across, normalize, 0.01)
                minus = caffe_mvn(x - e.reshape(x.shape), across, normalize, 0.01)
                numeric.flat[i] = ((plus - minus) * dy).sum() / (2 * h)
            assert_close(dx, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.cuda
def test_cuda_matches_cpu_on_long_rows(dc):
    x = np.random.default_rng(4).standard_normal((2, 2, 5, 9)).astype(F32)  # rows longer than a block
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(F32)
    for args in ({}, {"across_channels": 1, "eps": 0.1}, {"normalize_variance": 0}):
        fwd = op("MVN", ["X"], ["Y"], **args)
        grad = op("MVNGradient", ["X", "dY"], ["dX"], **args)
        cpu_y, cuda_y = (run(fwd, [x], d)[0] for d in dc)
        assert_close(cuda_y, cpu_y, rtol=1e-5, atol=1e-6)
        cpu_dx, cuda_dx = (run(grad, [x, dy], d)[0] for d in dc)
        assert_close(cuda_dx, cpu_dx, rtol=1e-5, atol=1e-6)
