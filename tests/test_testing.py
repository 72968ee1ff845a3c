"""The harness itself: the gradient checker catches wrong gradients, the reference and
device checks catch wrong kernels, and the kink-dodging strategy keeps its promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from nbcaffe import core
from nbcaffe.devices import CPU, DeviceOption
from nbcaffe.testing import check_reference, directional_check
from nbcaffe.testing import strategies as nst


def test_directional_check_accepts_a_correct_gradient():
    a = np.random.default_rng(0).standard_normal((3, 4))

    def forward(xs):
        return [np.tanh(xs[0] @ xs[1])]

    def backward(xs, gys):
        g = gys[0] * (1 - np.tanh(xs[0] @ xs[1]) ** 2)
        return [g @ xs[1].T, xs[0].T @ g]

    b = np.random.default_rng(1).standard_normal((4, 2))
    assert directional_check(forward, backward, [a, b], wrt=0)
    assert directional_check(forward, backward, [a, b], wrt=1)


def test_directional_check_rejects_a_wrong_gradient():
    def forward(xs):
        return [np.sin(xs[0])]

    def backward(xs, gys):
        return [gys[0] * np.cos(xs[0]) * 1.01]  # 1% off

    with pytest.raises(AssertionError, match="disagrees with finite differences"):
        directional_check(forward, backward, [np.linspace(-1, 1, 7)], wrt=0)
    with pytest.raises(AssertionError, match="no gradient"):
        directional_check(forward, lambda xs, gys: [None], [np.ones(3)], wrt=0)


def test_reference_check_catches_a_wrong_reference_and_wrong_shapes():
    op = core.CreateOperator("Relu", ["x"], ["y"])
    x = np.array([-1.0, 2.0], np.float32)
    check_reference(DeviceOption(CPU), op, [x])
    with pytest.raises(AssertionError):
        check_reference(DeviceOption(CPU), op, [x], reference=lambda x: (np.abs(x),))
    with pytest.raises(AssertionError, match="shape"):
        check_reference(DeviceOption(CPU), op, [x], reference=lambda x: (np.maximum(x, 0)[None],))
    with pytest.raises(AssertionError, match="dtype"):
        check_reference(DeviceOption(CPU), op, [x], reference=lambda x: (np.maximum(x, 0).astype(np.float64),))


@given(x=nst.tensor(avoid=(0.0,), margin=0.05))
def test_tensor_strategy_dodges_kinks(x):
    assert x.dtype == np.float32 and 1 <= x.ndim <= 4
    assert np.all(np.abs(x) >= 0.05 - 1e-7)


@given(xs=nst.tensors(3, min_dim=2, max_dim=2))
def test_tensors_strategy_shares_a_shape(xs):
    assert len({x.shape for x in xs}) == 1 and xs[0].ndim == 2


def test_device_strategies():
    options = nst.device_options()
    assert options[0].device_type == CPU
    assert set(nst.devices()) == {"gc", "dc"}
