"""Sweep samples of the extra_activation family (inputs kept off each function's kinks)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import away_from, case

F32 = np.float32


def samples():
    r = np.random.default_rng(25)
    x = away_from(r.standard_normal((2, 3)).astype(F32) * 2)
    x4 = r.standard_normal((2, 3, 2)).astype(F32) * 2
    return {
        "Selu": [case([x]), case([x], alpha=1.5, scale=2.0)],
        "HardSigmoid": [case([away_from(away_from(x, 2.5, 0.1), -2.5, 0.1)]),
                        case([away_from(x, 1.0, 0.1)], alpha=0.5, beta=0.5)],
        "Softsign": [case([x]), case([x4])],
        "ThresholdedRelu": [case([away_from(x, 1.0, 0.1)]), case([away_from(x, 0.5, 0.1)], alpha=0.5)],
        "Celu": [case([x]), case([x], alpha=2.0)],
        "HardSwish": [case([away_from(away_from(x, 3.0, 0.1), -3.0, 0.1)])],
        "Mish": [case([x]), case([x4])],
        "Gelu": [case([x]), case([x], fast_gelu=1)],
        "Swish": [case([x]), case([x4], alpha=1.7)],
        "Shrink": [case([away_from(away_from(x, 0.5, 0.1), -0.5, 0.1)]),
                   case([away_from(away_from(x, 1.0, 0.1), -1.0, 0.1)], lambd=1.0, bias=0.3),
                   case([np.array([-3, -1, 0, 1, 3], np.int32)], lambd=1.5, bias=1.0)],
    }


GRADIENT_OPTIONS = {"Shrink": {"skip_cases": [2]}}  # int input
