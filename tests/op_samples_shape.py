"""Sweep samples of the shape family (Shape, Size, Range)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    x = np.zeros((2, 3, 4), F32)
    return {
        "Shape": [case([x]), case([x], axes=[0, -1]), case([np.zeros((0, 5), np.int32)])],
        "Size": [case([x]), case([np.zeros((0, 5), F32)]), case([np.array(3.0, F32)])],
        "Range": [case([np.array(1, np.int64), np.array(10, np.int64), np.array(3, np.int64)]),
                  case([np.array(5.0, F32), np.array(1.0, F32), np.array(-1.5, F32)]),
                  case([np.array(4, np.int32)]),
                  case([np.array(3, np.int64), np.array(3, np.int64), np.array(1, np.int64)])],
    }


HOST_INPUTS = {"Range": (0, 1, 2)}
