"""Sweep samples for the axis reductions, ArgMax/ArgMin and Summarize in
nbcaffe/ops/reduction.py (SumElements, Max, ... keep theirs in tests/op_samples.py)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(6)
    x234 = r.standard_normal((2, 3, 4)).astype(F32)
    x2345 = r.standard_normal((2, 3, 2, 5)).astype(F32)
    ints = r.integers(-5, 5, (3, 4)).astype(np.int32)
    axes_cases = [case([x234]), case([x234], axes=[1], keepdims=0), case([x2345], axes=[0, 2]),
                  case([x2345], axes=[-1, 1], keepdims=0), case([x234], axes=[0, 1, 2], keepdims=0)]
    front_back = [case([x234]), case([x234], num_reduce_dim=2), case([x2345], num_reduce_dim=0)]
    return {
        "ReduceSum": axes_cases + [case([ints], axes=[1])],
        "ReduceMean": axes_cases,
        "ReduceMax": axes_cases + [case([ints], axes=[0])],
        "ReduceMin": axes_cases,
        "ReduceFrontSum": front_back, "ReduceFrontMean": front_back, "ReduceFrontMax": front_back,
        "ReduceBackSum": front_back, "ReduceBackMean": front_back, "ReduceBackMax": front_back,
        "ArgMax": [case([x234]), case([x234], axis=1, keepdims=0), case([ints], axis=0)],
        "ArgMin": [case([x234], axis=0), case([ints])],
        "Summarize": [case([x234]), case([r.standard_normal(1).astype(F32)]), case([x234], outputs=0)],
    }


GRADIENT_OPTIONS = {
    "ReduceSum": {"skip_cases": [5]},  # int32 input: nothing to differentiate
    "ReduceMax": {"skip_cases": [5]},
}
