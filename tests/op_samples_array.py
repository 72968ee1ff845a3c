"""Sweep samples for the array family (nbcaffe/ops/array.py): layouts NCHW and NHWC, negative
axes, add_axis, every pad mode, starts/ends and scales as inputs, in-place Squeeze/ExpandDims.

Shapes stay tiny: under the CUDA simulator every element is a Python thread.
"""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32
I32 = np.int32
I64 = np.int64


def samples():
    r = np.random.default_rng(4)

    def t(*shape, dtype=F32):
        return r.standard_normal(shape).astype(dtype)

    x = t(2, 3, 2, 2)
    nhwc = t(2, 2, 2, 3)
    ints = r.integers(-9, 9, (2, 3, 4)).astype(I64)
    concat = [
        case([x, t(2, 1, 2, 2)], outputs=2),  # order NCHW: channels
        case([t(2, 3), t(2, 1), t(2, 2)], outputs=2, axis=-1),
        case([t(3, 2), t(3, 2), t(3, 2)], outputs=2, axis=1, add_axis=1),
        case([t(2, 3), t(2, 3)], outputs=2, axis=-1, add_axis=1),  # -1 of the 3-d output
        case([nhwc, t(2, 2, 2, 1)], outputs=2, order="NHWC"),
        case([ints, ints[:1]], outputs=2, axis=0),
    ]
    split = [
        case([x], outputs=3),  # order NCHW: equal parts of the 3 channels
        case([t(2, 4, 3)], outputs=2, axis=-2, split=[1, 3]),
        case([x, np.array([1, 2], I32)], outputs=2),  # sizes as a host input
        case([t(3, 2)], outputs=3, axis=0, add_axis=1),
        case([nhwc], outputs=2, order="NHWC", split=[2, 1]),
        case([ints], outputs=2, axis=2, split=[3, 1]),
    ]
    slices = [
        case([t(3, 4, 2)], starts=[1, 0], ends=[-1, 3]),  # -1 = to the end
        case([t(3, 4)], starts=[-3, 1], ends=[-2, 9]),  # negative start; end past the size is clamped
        case([t(4, 3), np.array([1, 0], I32), np.array([3, -1], I32)]),
        case([t(2, 5), np.array([0, 2], I64), np.array([2, 4], I64)]),
        case([ints], starts=[0, 1, 1], ends=[1, 3, -2]),
    ]
    return {
        "Concat": concat,
        "DepthConcat": [case([x, t(2, 2, 2, 2)], outputs=2)],
        "Split": split,
        "DepthSplit": [case([t(2, 4)], outputs=2, axis=1)],
        "Transpose": [case([t(2, 3, 4)]), case([t(2, 3, 4)], axes=[1, 0, 2]), case([x], axes=[0, 2, 3, 1]),
                      case([ints], axes=[2, 0, 1])],
        "NCHW2NHWC": [case([x]), case([t(2, 3, 4)]), case([t(1, 2, 2, 3, 2)])],
        "NHWC2NCHW": [case([nhwc]), case([t(2, 4, 3)]), case([t(1, 2, 3, 2, 2)])],
        "ChannelShuffle": [case([t(1, 6, 2, 2)], group=3), case([t(2, 4, 3)], group=2),
                           case([t(1, 2, 2, 6)], group=2, order="NHWC"), case([t(2, 6)], group=1)],
        "PadImage": [case([x], pads=[1, 2, 0, 1], value=0.5),
                     case([t(1, 2, 3, 4)], pad=2, mode="reflect"),
                     case([nhwc], pad_t=0, pad_l=1, pad_b=2, pad_r=1, mode="edge", order="NHWC"),
                     case([t(1, 2, 2, 1)], pads=[3, 1, 2, 4], mode="edge"),
                     case([t(1, 3, 4, 2)], pads=[2, 1, 1, 0], mode="reflect", order="NHWC"),
                     case([nhwc], pad=1, value=-2.0, order="NHWC")],
        "ResizeNearest": [case([x], width_scale=2.0, height_scale=2.0),
                          case([t(1, 2, 3, 5)], width_scale=0.5, height_scale=1.5),
                          case([t(1, 3, 4, 2)], width_scale=1.5, height_scale=0.6, order="NHWC"),
                          case([t(1, 2, 3, 2), np.array([2.0, 3.0], F32)])],
        "Squeeze": [case([t(2, 1, 3, 1)], dims=[1, 3]), case([t(1, 3)], dims=[0], inplace={0: 0}),
                    case([t(2, 1, 1)], dims=[2, 1, 2])],
        "ExpandDims": [case([t(2, 3)], dims=[0, 3]), case([t(2, 3)], dims=[2], inplace={0: 0}),
                       case([t(3)], dims=[1, 0, 1])],
        "Slice": slices,
        "Gather": [case([t(4, 3), np.array([[1, 0], [3, 1]], I32)]),
                   case([t(4, 2), np.array([-1, 2, -1], I64)]),  # negative indices wrap on axis 0
                   case([t(2, 3, 2), np.array([2, 0, 2], I64)], axis=1),
                   case([t(2, 3), np.array([[1], [1]], I32)], axis=-1),
                   case([ints, np.array([1], I32)])],
    }


HOST_INPUTS = {"Split": {1}, "DepthSplit": {1}, "Slice": {1, 2}, "ResizeNearest": {1}}

GRADIENT_OPTIONS = {
    "Concat": {"outputs": [0]},  # split_info is an int shape record
    "DepthConcat": {"outputs": [0]},
    "ResizeNearest": {"wrt": [0]},  # the scales input has no gradient
}
