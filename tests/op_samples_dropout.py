"""Sweep samples of Dropout.

Dropout is a random op: the sweep compares shapes and dtypes only (its statistics, scaling and
exact Y == X * mask / (1 - ratio) are tested in tests/ops/test_dropout.py).  The training cases
set ``random_seed`` so that the gradient check's repeated forward runs draw the same mask.
"""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(11)
    x = r.standard_normal((3, 4)).astype(F32)
    x4 = r.standard_normal((2, 3, 2, 2)).astype(F32)
    return {
        "Dropout": [
            case([x], outputs=2, ratio=0.5, random_seed=5),
            case([x4], outputs=2, ratio=0.25, random_seed=6, inplace={0: 0}),
            case([x], outputs=2, is_test=1),
            case([x4], outputs=1, is_test=1, inplace={0: 0}),
            case([x], outputs=2, ratio=0.0, random_seed=7),
        ],
        # DropoutGrad is named Caffe2's way (not "...Gradient"), so the sweep wants it listed
        "DropoutGrad": [
            case([x, r.random((3, 4)) < 0.5], ratio=0.5),
            case([x4, r.random(24) < 0.7], ratio=0.3, inplace={0: 0}),
            case([x], is_test=1),
        ],
    }


GRADIENT_OPTIONS = {"Dropout": {"outputs": [0]}}  # the bool mask gets no gradient
