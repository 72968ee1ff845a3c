"""Parameter-update kernels (WeightedSum, MomentumSGDUpdate, Adam, Adagrad, RmsProp): the
in-place one-array kernels and the split over the thread pool, forced on small arrays, against
NumPy written here (float64, then cast)."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe.ops import _update_kernels, training
from tests.ops._util import op, run

F32 = np.float32


@pytest.fixture(params=[False, True], ids=["one-task", "split"])
def split(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(_update_kernels, "PARALLEL_UPDATE_MIN", 64)  # 1000 elements: several tasks
    return request.param


def _arrays(n, count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(F32) for _ in range(count)]


@pytest.mark.parametrize("n", [1, 1000])
def test_weighted_sum_in_place_and_not(split, n):
    x0, x1, x2 = _arrays(n, 3)
    w = [np.array([v], F32) for v in (1.0, -0.01, 0.5)]
    expected2 = (x0.astype(np.float64) * w[0][0] + x1 * np.float64(w[1][0])).astype(F32)
    (got,) = run(op("WeightedSum", ["p", "one", "g", "lr"], ["p"]), [x0, w[0], x1, w[1]])  # plain SGD, in place
    np.testing.assert_allclose(got, expected2, rtol=1e-6, atol=1e-7)
    expected3 = (x0.astype(np.float64) + w[1][0] * x1.astype(np.float64) + w[2][0] * x2.astype(np.float64))
    for outputs in (["p"], ["y"]):
        (got,) = run(op("WeightedSum", ["p", "a", "g", "b", "h", "c"], outputs), [x0, w[0], x1, w[1], x2, w[2]])
        np.testing.assert_allclose(got, expected3, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_sgd(split, nesterov):
    g, m, p = _arrays(1000, 3, seed=1)
    lr = np.array([0.05], F32)
    g64, m64, p64 = (a.astype(np.float64) for a in (g, m, p))
    if nesterov:
        m_new = 0.9 * m64 + 0.05 * g64
        step = 1.9 * m_new - 0.9 * m64
    else:
        m_new = step = 0.05 * g64 + 0.9 * m64
    got = run(op("MomentumSGDUpdate", ["g", "m", "lr", "p"], ["g", "m", "p"], momentum=0.9, nesterov=nesterov),
              [g, m, lr, p])
    for a, e in zip(got, (step, m_new, p64 - step)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    # outputs apart from the inputs (the kernel's general contract; the op enforces in place)
    ng, nm = np.empty_like(g), np.empty_like(m)
    g2, m2, p2 = g.copy(), m.copy(), p.copy()
    momentum = float(np.float32(0.9))  # the op's argument travels as a float32 proto field
    training.momentum_sgd_cpu(g2, m2, lr, p2, momentum, nesterov, ng, nm)
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_array_equal(m2, m)
    np.testing.assert_array_equal(ng, got[0])
    np.testing.assert_array_equal(nm, got[1])
    np.testing.assert_array_equal(p2, got[2])


def test_adam_adagrad_rmsprop(split):
    p, m1, m2, g = _arrays(1000, 4, seed=2)
    m2 = np.abs(m2)
    lr = np.array([-0.01], F32)
    it = np.array([4], np.int64)
    P, M1, M2, G = (a.astype(np.float64) for a in (p, m1, m2, g))
    got = run(op("Adam", ["p", "m1", "m2", "g", "lr", "it"], ["p", "m1", "m2"]), [p, m1, m2, g, lr, it])
    e1 = 0.9 * M1 + 0.1 * G
    e2 = 0.999 * M2 + 0.001 * G * G
    ep = P - 0.01 * np.sqrt(1 - 0.999 ** 5) / (1 - 0.9 ** 5) * e1 / (np.sqrt(e2) + 1e-5)
    for a, e in zip(got, (ep, e1, e2)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    got = run(op("Adagrad", ["p", "h", "g", "lr"], ["p", "h"], decay=0.9), [p, m2, g, lr])
    h = 0.9 * M2 + G * G
    for a, e in zip(got, (P - 0.01 * G / (np.sqrt(h) + 1e-5), h)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    got = run(op("RmsProp", ["g", "ms", "mom", "lr"], ["g", "ms", "mom"], momentum=0.5), [g, m2, m1, lr])
    ms = M2 + 0.1 * (G * G - M2)
    mom = 0.5 * M1 - 0.01 * G / np.sqrt(1e-5 + ms)
    for a, e in zip(got, (mom, ms, mom)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def test_split_covers_every_element():
    seen = np.zeros(1000, np.int64)

    def mark(lo, hi):
        seen[lo:hi] += 1

    old = _update_kernels.PARALLEL_UPDATE_MIN
    _update_kernels.PARALLEL_UPDATE_MIN = 64
    try:
        _update_kernels.split_update(1000, mark)
    finally:
        _update_kernels.PARALLEL_UPDATE_MIN = old
    assert (seen == 1).all()
