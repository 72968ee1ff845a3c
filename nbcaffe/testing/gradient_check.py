"""Directional finite-difference gradient checks in float64.

One random direction costs two forward evaluations whatever the input size (Caffe2's
element-by-element check costs two per element), and float64 keeps the central difference
accurate, so tolerances can stay tight (Chainer's check_backward, JAX's check_grads).
"""

from __future__ import annotations

import numpy as np


def directional_check(forward, backward, inputs, wrt, rng=None, eps=1e-6, rtol=1e-4, atol=1e-6, directions=2):
    """Check ``backward`` against central differences of ``forward`` along random directions.

    Args:
        forward: ``forward(list of float64 arrays) -> list of output arrays``.
        backward: ``backward(list of inputs, list of output gradients) -> list of input
            gradients`` (entries may be None for inputs without a gradient).
        inputs: the point to check at (floating inputs are cast to float64).
        wrt: index of the input whose gradient is checked.
        directions: how many random directions to try.

    The scalar checked is L(x) = sum_k <y_k(x), g_k> for random output weights g_k, so the
    directional derivative of L along d must equal <dL/dx, d>.  Raises AssertionError with
    both numbers when they disagree.
    """
    rng = rng or np.random.default_rng(0)
    # floating inputs go to float64; integer inputs (labels, indices) stay as they are
    xs = [np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in inputs]
    if xs[wrt].dtype.kind != "f":
        raise AssertionError(f"input {wrt} is not floating point; its gradient cannot be checked")
    outputs = forward(xs)
    gys = [rng.standard_normal(np.shape(y)) for y in outputs]

    def loss(x):
        trial = list(xs)
        trial[wrt] = x
        return sum(float(np.sum(np.asarray(y, dtype=np.float64) * g)) for y, g in zip(forward(trial), gys))

    grads = backward(xs, gys)
    analytic_grad = grads[wrt]
    if analytic_grad is None:
        raise AssertionError(f"backward returned no gradient for input {wrt}")
    analytic_grad = np.asarray(analytic_grad, dtype=np.float64)
    if analytic_grad.shape != xs[wrt].shape:
        raise AssertionError(f"gradient of input {wrt} has shape {analytic_grad.shape}, input has {xs[wrt].shape}")
    for _ in range(directions):
        d = rng.standard_normal(xs[wrt].shape)
        numeric = (loss(xs[wrt] + eps * d) - loss(xs[wrt] - eps * d)) / (2 * eps)
        analytic = float(np.sum(analytic_grad * d))
        if not np.isclose(analytic, numeric, rtol=rtol, atol=atol):
            raise AssertionError(
                f"gradient of input {wrt} disagrees with finite differences along a random direction:"
                f" analytic {analytic!r}, numeric {numeric!r} (rtol={rtol}, atol={atol})")
    return True
