"""Sweep samples for nbcaffe/ops/nonlinearity.py: PRelu, Softplus."""

from __future__ import annotations

import numpy as np

from tests.op_samples import away_from, case

F32 = np.float32


def samples():
    r = np.random.default_rng(5)

    def t(*shape):
        return away_from(r.standard_normal(shape).astype(F32))  # off the kink at 0

    big = (r.standard_normal((20, 24)) * 4).astype(F32)  # >= 256 elements: the NumPy form
    big[0, :6] = [-100.0, 100.0, -20.0, 20.0, 0.0, -1e-3]  # far tails: no overflow, no NaN
    return {
        "PRelu": [
            case([t(2, 3, 2), np.array([0.1, -0.2, 0.3], F32)]),
            case([t(2, 3), np.array([0.25], F32)]),
            case([t(2, 2, 3), np.array([0.1, 0.5, -0.3], F32)], order="NHWC"),
            case([t(2, 3, 2, 2), np.array([0.2, 0.3, 0.4], F32)]),
            case([t(2, 3), np.array([0.5, 0.6, 0.7], F32)], inplace={0: 0}),
        ],
        "Softplus": [
            case([r.standard_normal((2, 3)).astype(F32)]),
            case([big]),
            case([r.standard_normal((3, 4)).astype(F32)], inplace={0: 0}),
        ],
    }


GRADIENT_OPTIONS = {
    "PRelu": {"skip_cases": [4]},  # in place: X is overwritten, so its gradient cannot be formed
}
