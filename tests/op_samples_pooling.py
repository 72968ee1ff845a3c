"""Sweep samples for the pooling family (tests/test_op_sweep.py): NCHW/NHWC, strides,
asymmetric pads, dilation, legacy padding (Caffe's ceil mode), global pooling,
count_include_pad, 1-D/3-D, MaxPoolWithIndex."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(41)
    x = r.standard_normal((2, 3, 5, 6)).astype(F32)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    x1 = r.standard_normal((2, 3, 7)).astype(F32)
    x3 = r.standard_normal((1, 2, 4, 5, 3)).astype(F32)
    x3h = np.ascontiguousarray(x3.transpose(0, 2, 3, 4, 1))
    common = [
        case([x], kernel=2, stride=2),
        case([x], kernel=3, stride=2, pad_t=1, pad_l=0, pad_b=2, pad_r=1),
        case([xh], kernels=[3, 2], strides=[1, 2], pad=1, order="NHWC"),
        case([x], kernel=3, stride=2, pad=1, legacy_pad=3),  # Caffe's ceil mode, extra tail pad
        case([x], kernel=2, stride=2, legacy_pad=3),
        case([x], global_pooling=1),
        case([xh], global_pooling=1, order="NHWC"),
        case([x], kernel=2, dilation=2, pad=1),
        case([x], kernel=3, stride=2, legacy_pad=2),
    ]
    average = common + [
        case([x], kernel=3, stride=2, pad=1, count_include_pad=1),
        case([xh], kernel=3, pad=1, order="NHWC", count_include_pad=1),
    ]
    one_d = [case([x1], kernels=[3], strides=[2], pads=[1, 1])]
    three_d = [case([x3], kernels=[2, 3, 2], strides=[1, 2, 1], pads=[1, 1, 0, 0, 1, 1]),
               case([x3h], kernel=2, order="NHWC")]
    with_index = [case([x], outputs=2, kernel=2, stride=2),
                  case([x], outputs=2, kernel=3, stride=2, pad=1, legacy_pad=3),
                  case([xh], outputs=2, kernel=3, stride=1, pad=1, order="NHWC"),
                  case([x3], outputs=2, kernels=[2, 2, 2])]
    return {
        "MaxPool": common, "MaxPool1D": one_d, "MaxPool2D": common[:2], "MaxPool3D": three_d,
        "AveragePool": average, "AveragePool1D": one_d, "AveragePool2D": average[-2:], "AveragePool3D": three_d,
        "MaxPoolWithIndex": with_index,
    }


# the Index output is integer: gradients flow into Y only
GRADIENT_OPTIONS = {"MaxPoolWithIndex": {"outputs": [0]}}
