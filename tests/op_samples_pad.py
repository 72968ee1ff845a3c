"""Sweep samples of the pad family (every mode, cropping by negative pads)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    x = np.random.default_rng(28).standard_normal((2, 3, 4)).astype(F32)
    return {
        "Pad": [case([x], pads=[0, 1, 2, 1, 0, 1], value=1.5),
                case([x], pads=[0, 2, 3, 0, 1, 2], mode="reflect"),
                case([x], pads=[1, 0, 2, 0, 2, 1], mode="edge"),
                case([x], pads=[0, 4, 1, 1, 2, 5], mode="wrap"),
                case([x], pads=[0, -1, 1, 0, 1, -2], mode="reflect"),
                case([np.arange(6).reshape(2, 3)], pads=[1, 1, 0, 2], value=7.0)],
    }


GRADIENT_OPTIONS = {"Pad": {"skip_cases": [5]}}  # int data
