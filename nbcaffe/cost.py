"""Operator cost estimates (FLOPs) from shapes, for BenchmarkNet tables and net summaries.

Counts multiply-adds as 2 FLOPs, elementwise ops as one FLOP per output element, and gives 0
for pure data movement.  Ops not listed are estimated as elementwise when they have a
tensor output, which is the right order of magnitude for the catalogue's remaining ops.
"""

from __future__ import annotations

import math

DATA_MOVEMENT = {
    "Copy", "Reshape", "Flatten", "FlattenToVec", "ResizeLike", "Cast", "Concat", "DepthConcat", "Split",
    "Transpose", "NHWC2NCHW", "NCHW2NHWC", "ChannelShuffle", "PadImage", "Squeeze", "ExpandDims", "Slice",
    "Gather", "CopyCPUToGPU", "CopyGPUToCPU", "EnsureCPUOutput", "CopyFromCPUInput", "StopGradient", "Print",
    "ConstantFill", "GivenTensorFill", "Iter", "AtomicIter", "LearningRate", "CreateMutex", "Save", "Load",
    "TensorProtosDBInput", "ImageInput", "CreateDB",
}


def _prod(shape):
    return int(math.prod(shape)) if shape is not None else 0


def _arg(op_def, name, default):
    for arg in op_def.arg:
        if arg.name == name:
            if arg.HasField("i"):
                return arg.i
            if arg.HasField("f"):
                return arg.f
            if len(arg.ints):
                return list(arg.ints)
    return default


def flops(op_def, in_shapes, out_shapes) -> int:
    """Estimated floating-point operations of one run of ``op_def`` for these shapes."""
    t = op_def.type
    if t in DATA_MOVEMENT:
        return 0
    if t == "FC":
        w = in_shapes[1]
        return 2 * _prod(out_shapes[0]) * (_prod(w) // max(w[0], 1))
    if t == "FCGradient":
        w = in_shapes[1]
        return 2 * 2 * _prod(in_shapes[2]) * (_prod(w) // max(w[0], 1))
    if t in ("Conv", "Conv1D", "Conv2D", "Conv3D"):
        w = in_shapes[1]
        return 2 * _prod(out_shapes[0]) * (_prod(w) // max(w[0], 1))
    if t == "ConvGradient":
        w = in_shapes[1]
        dy = in_shapes[2]
        return 2 * 2 * _prod(dy) * (_prod(w) // max(w[0], 1))
    if t == "ConvTranspose":
        return 2 * _prod(in_shapes[0]) * (_prod(in_shapes[1]) // max(in_shapes[1][0], 1))
    if t in ("MatMul", "BatchMatMul"):
        a = in_shapes[0]
        trans_a = bool(_arg(op_def, "trans_a", 0))
        k = a[-2] if trans_a and len(a) >= 2 else a[-1]
        return 2 * _prod(out_shapes[0]) * k
    if out_shapes and out_shapes[0] is not None:
        return _prod(out_shapes[0])
    return 0
