"""One or more small, valid input sets for every registered operator.

The sweep (tests/test_op_sweep.py) runs each case through the reference, shape-inference
and device checks, and fails when an op has no entry here — so a new op cannot skip the
harness.  Shapes stay tiny: the CUDA simulator runs one Python thread per CUDA thread.
"""

from __future__ import annotations

import numpy as np

from nbcaffe.ops.training import Mutex
from nbcaffe.proto import caffe2_pb2

F32 = np.float32
T = caffe2_pb2.TensorProto


def case(inputs, outputs=1, inplace=None, **args):
    """A sample: input arrays, number of outputs, op arguments; ``inplace`` maps an output
    index to the input index whose blob name it reuses."""
    return {"inputs": list(inputs), "outputs": outputs, "args": args, "inplace": inplace or {}}


def _r(seed=0):
    return np.random.default_rng(seed)


def away_from(values, kink=0.0, margin=0.05):
    values = values.copy()
    near = np.abs(values - kink) < margin
    values[near] = kink + margin
    return values


def samples():
    r = _r(0)
    x23 = r.standard_normal((2, 3)).astype(F32)
    y23 = r.standard_normal((2, 3)).astype(F32)
    pos = (r.random((2, 3)) + 0.5).astype(F32)
    x234 = r.standard_normal((2, 3, 4)).astype(F32)
    probs = (lambda a: a / a.sum(axis=1, keepdims=True))(r.random((3, 4)).astype(F32) + 0.1).astype(F32)
    labels3 = np.array([0, 3, 1], np.int32)

    binary = [case([x23, y23]),
              case([x234, r.standard_normal((3, 4)).astype(F32)], broadcast=1),
              case([x234, r.standard_normal((3,)).astype(F32)], broadcast=1, axis=1),
              case([x234, r.standard_normal((4,)).astype(F32)]),
              case([r.standard_normal((3, 1)).astype(F32), r.standard_normal((1, 4)).astype(F32)])]
    div_cases = [case([x23, pos]), case([x234, (r.random(4) + 0.5).astype(F32)], broadcast=1)]
    unary = [case([x23]), case([x234])]
    # >= 256 elements: the CPU switches to the NumPy (SIMD) form of transcendental kernels
    big = (r.standard_normal((20, 24)) * 4).astype(F32)
    big[0, :4] = [-100.0, 100.0, -20.0, 20.0]  # far tails: no overflow, no NaN
    big_pos = (r.random((20, 24)) * 3 + 0.01).astype(F32)
    big_labels = r.integers(0, 24, 20).astype(np.int32)
    it = np.array([9], np.int64)
    lr1 = np.array([0.1], F32)

    return {
        "Add": binary, "Sub": binary, "Mul": binary, "Div": div_cases,
        "Sum": [case([x23]), case([x23, y23]), case([x23, y23, pos])],
        "Scale": [case([x23], scale=2.5)],
        "Exp": unary + [case([big / 8])], "Log": [case([pos]), case([big_pos])], "Sqrt": [case([pos])],
        "Abs": unary, "Negative": unary,
        "Sqr": unary,
        "Pow": [case([pos], exponent=2.5), case([big_pos], exponent=-1.5),
                case([pos, (r.random((2, 3)) + 0.5).astype(F32)]),
                case([pos, np.array([2.0], F32)], broadcast=1)],
        "Clip": [case([x23], min=-0.5, max=0.3), case([x23])],
        "Relu": [case([away_from(x23)])], "LeakyRelu": [case([away_from(x23)], alpha=0.2)],
        "Sigmoid": unary + [case([big])], "Tanh": unary + [case([big])],
        "Elu": [case([away_from(x23)], alpha=0.7), case([away_from(big)], alpha=0.7)],
        "Softmax": [case([x23]), case([x234], axis=2), case([x234], axis=1), case([big * 10])],
        "FC": [case([r.standard_normal((3, 4)).astype(F32), r.standard_normal((2, 4)).astype(F32),
                     r.standard_normal(2).astype(F32)]),
               case([x234, r.standard_normal((5, 4)).astype(F32), r.standard_normal(5).astype(F32)], axis=2),
               case([x234, r.standard_normal((5, 3, 4)).astype(F32), r.standard_normal(5).astype(F32)])],
        "SoftmaxWithLoss": [
            case([r.standard_normal((3, 4)).astype(F32), labels3], outputs=2),
            case([r.standard_normal((3, 4)).astype(F32), labels3, np.array([1.0, 0.5, 2.0], F32)], outputs=2,
                 scale=0.5),
            case([r.standard_normal((3, 4)).astype(F32), probs], outputs=2, label_prob=1),
            case([big * 10, big_labels], outputs=2),
            case([big, big_labels, r.random(20).astype(F32)], outputs=2, scale=2.0),
            case([r.standard_normal((2, 3, 2, 2)).astype(F32),
                  np.array([[[0, 2], [-1, 1]], [[1, 1], [2, -1]]], np.int32)], outputs=2, spatial=1)],
        "LabelCrossEntropy": [case([probs, labels3])],
        "CrossEntropy": [case([probs, probs[::-1].copy()])],
        "SquaredL2Distance": [case([x23, y23]), case([x234, x234[::-1].copy()])],
        "AveragedLoss": [case([x23]), case([r.standard_normal(5).astype(F32)])],
        "ConstantFill": [case([], shape=[2, 3], value=1.5), case([x23], value=2.0),
                         case([], shape=[2], value=3, dtype=T.INT32), case([], shape=[3], value=7),
                         case([np.array([2, 2], np.int64)], value=1.0, input_as_shape=1),
                         case([x23], value=1.0, extra_shape=[2])],
        "GaussianFill": [case([], shape=[4, 5], mean=1.0, std=0.5), case([x23])],
        "UniformFill": [case([], shape=[4, 5], min=-2.0, max=3.0)],
        "UniformIntFill": [case([], shape=[4, 5], min=-2, max=3)],
        "XavierFill": [case([], shape=[4, 5])],
        "MSRAFill": [case([], shape=[4, 5, 2])],
        "GivenTensorFill": [case([], shape=[2, 3], values=[1.0, 2.0, 3.0, 4.0, 5.0, 6.5])],
        "GivenTensorDoubleFill": [case([], shape=[3], values=[1.0, 2.0, 3.0])],
        "GivenTensorIntFill": [case([], shape=[2, 2], values=[1, -2, 3, 4])],
        "GivenTensorInt16Fill": [case([], shape=[2], values=[1, -2])],
        "GivenTensorInt64Fill": [case([], shape=[3], values=[1, 2 ** 40, -3])],
        "GivenTensorBoolFill": [case([], shape=[3], values=[1, 0, 1])],
        "GivenTensorStringFill": [case([], shape=[2], values=["a", "bc"])],
        "GivenTensorByteStringToUInt8Fill": [case([], shape=[2, 2], values=[b"\x01\x02\x03\xff"])],
        "Reshape": [case([x234], outputs=2, shape=[4, -1]), case([x234], outputs=2, shape=[0, 12]),
                    case([x234, np.array([6, 4], np.int64)], outputs=2)],
        "Flatten": [case([x234]), case([x234], axis=2)],
        "FlattenToVec": [case([x234])],
        "ResizeLike": [case([x234, r.standard_normal((6, 4)).astype(F32)])],
        "Cast": [case([x23], to=T.INT32), case([x23], to=T.BOOL), case([labels3], to=T.FLOAT),
                 case([x23], to=T.DOUBLE)],
        "Copy": [case([x23])], "StopGradient": [case([x23])], "EnsureCPUOutput": [case([x23])],
        "CopyFromCPUInput": [case([x23])], "CopyCPUToGPU": [case([x23])], "CopyGPUToCPU": [case([x23])],
        "Print": [case([x23], outputs=0)],
        **persistence_samples(x23, labels3),
        # reduction
        "SumElements": [case([x23]), case([x234], average=1)],
        "SumSqrElements": [case([x23]), case([x234], average=1)],
        "Max": [case([x23]), case([x23, y23]), case([x23, y23, pos])],
        "Min": [case([x23, y23]), case([x23, y23, pos], inplace={0: 0})],
        # training
        "Iter": [case([np.array([41], np.int64)], inplace={0: 0})],
        "AtomicIter": [case([Mutex(), np.array([7], np.int64)], inplace={0: 1})],
        "CreateMutex": [case([])],
        "LearningRate": [case([it], base_lr=-0.1, policy="fixed"),
                         case([it], base_lr=0.5, policy="step", stepsize=3, gamma=0.9),
                         case([it], base_lr=0.5, policy="multistep", stepsizes=[2, 5, 20], gamma=0.5),
                         case([it], base_lr=0.5, policy="exp", gamma=0.99),
                         case([it], base_lr=0.5, policy="inv", gamma=0.1, power=0.75),
                         case([it], base_lr=0.5, policy="poly", power=2.0, max_iter=100),
                         case([it], base_lr=0.5, policy="linearWarmup", start_multiplier=0.1, num_iter=20),
                         case([it], base_lr=0.5, policy="constantWarmup", multiplier=0.2, num_iter=20),
                         case([it], base_lr=0.5, policy="alter", active_period=4, inactive_period=3)],
        "WeightedSum": [case([x23, np.array([2.0], F32), y23, np.array([-0.5], F32)]),
                        case([x23, np.array([1.0], F32), y23, np.array([-0.1], F32)], inplace={0: 0}),
                        case([x23, np.array([3.0], F32)])],
        "MomentumSGDUpdate": [case([x23, y23, lr1, pos], outputs=3, inplace={0: 0, 1: 1, 2: 3}, momentum=0.9),
                              case([x23, y23, lr1, pos], outputs=3, inplace={0: 0, 1: 1, 2: 3}, momentum=0.9,
                                   nesterov=1)],
        "Adam": [case([pos, y23, np.abs(x23), x23, -lr1, it], outputs=3, inplace={0: 0, 1: 1, 2: 2},
                      beta1=0.8, beta2=0.95, epsilon=1e-6)],
        "Adagrad": [case([pos, np.abs(x23), y23, -lr1], outputs=2, inplace={0: 0, 1: 1}, epsilon=1e-4, decay=0.9)],
        "RmsProp": [case([x23, np.abs(y23), pos, -lr1], outputs=3, inplace={0: 0, 1: 1, 2: 2}, momentum=0.5)],
        "Accuracy": [case([probs, labels3]), case([probs, labels3], top_k=2),
                     case([np.array([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7]], F32), np.array([1, 2], np.int32)])],
    }


_PERSISTENCE_FOLDER = []


def persistence_samples(x, labels):
    """Save/Checkpoint/Load/CreateDB/DBExists cases over DBs in a private temporary folder
    (removed at exit); the DBs that Load and CreateDB read are written first."""
    import atexit
    import os
    import shutil
    import tempfile

    from nbcaffe import db
    from nbcaffe.ops.persistence import write_blobs

    if not _PERSISTENCE_FOLDER:
        _PERSISTENCE_FOLDER.append(tempfile.mkdtemp(prefix="nbcaffe_op_samples_"))
        atexit.register(shutil.rmtree, _PERSISTENCE_FOLDER[0], True)

    def path(name):
        return os.path.join(_PERSISTENCE_FOLDER[0], name)

    stored = [("x", x), ("labels", labels), ("note", b"persisted"), ("gpu_0/w", x[:1])]
    for db_type in ("minidb", "protodb"):
        write_blobs(path(f"blobs.{db_type}"), db_type, stored, chunk_size=4)
    iteration = np.array([10], np.int64)
    return {
        "Save": [case([x], outputs=0, db=path("save.minidb"), absolute_path=1),
                 case([x, labels], outputs=0, db=path("save.protodb"), db_type="protodb", absolute_path=1,
                      chunk_size=2, blob_name_overrides=["a", "b"])],
        "Checkpoint": [case([iteration, x], outputs=0, db=path("ckpt_%05d.minidb"), absolute_path=1, every=5)],
        "Snapshot": [case([iteration, x], outputs=0, db=path("snap_%d.minidb"), absolute_path=1, every=3)],
        "Load": [case([], outputs=2, db=path("blobs.minidb"), absolute_path=1, source_blob_names=["x", "labels"]),
                 case([], outputs=1, db=path("blobs.protodb"), db_type="protodb", absolute_path=1,
                      source_blob_names=["labels"]),
                 case([db.DBReader("minidb", path("blobs.minidb"))], outputs=1, source_blob_names=["gpu_0/w"])],
        "CreateDB": [case([], db=path("blobs.minidb")), case([], db=path("blobs.protodb"), db_type="protodb")],
        "DBExists": [case([], db_name=path("blobs.minidb"), absolute_path=1),
                     case([], db_name=path("missing.minidb"), absolute_path=1)],
    }


# Input devices that differ from the op's device (by input index).
HOST_INPUTS = {"CopyCPUToGPU": {0}, "CopyFromCPUInput": {0}, "Iter": {0}, "AtomicIter": {0, 1},
               "LearningRate": {0}, "Adam": {5}}
HOST_INPUTS["Load"] = {0}  # the DB reader input is a host object


# Gradient checks in the sweep: op -> options for nbcaffe.testing.check_gradient.  By default
# every floating input is checked with gradients flowing into every floating output;
# "outputs" restricts the outputs that receive a gradient, "wrt" the inputs checked, and
# "skip_cases" lists sample indices whose inputs sit on a kink or are not differentiable.
GRADIENT_OPTIONS = {
    "SoftmaxWithLoss": {"outputs": [1], "wrt": [0]},  # no gradient for labels or sample weights
    "CrossEntropy": {"wrt": [0]},
    "Reshape": {"outputs": [0]},
    "Cast": {"skip_cases": [0, 1, 2]},  # to INT32 / BOOL, and from int labels: not differentiable
    "Min": {"skip_cases": [1]},  # in place: X0 is overwritten, so its gradient cannot be formed (autograd refuses)
    "ResizeLike": {"wrt": [0]},  # `like` only lends its shape
}


# ----------------------------------------------------------------------------- family modules
# Each operator family added later keeps its samples in tests/op_samples_<family>.py with a
# `samples()` function and optional GRADIENT_OPTIONS / HOST_INPUTS dicts; they merge here, so
# engineers working on different families never edit the same file.

def _family_sample_modules():
    import importlib
    import pathlib

    for path in sorted(pathlib.Path(__file__).parent.glob("op_samples_*.py")):
        yield importlib.import_module(f"tests.{path.stem}")


_core_samples = samples


def samples():  # noqa: F811  (extends the core table above with the family modules)
    table = _core_samples()
    for module in _family_sample_modules():
        extra = module.samples()
        clash = set(extra) & set(table)
        if clash:
            raise ValueError(f"{module.__name__} redefines samples for {sorted(clash)}")
        table.update(extra)
    return table


for _module in _family_sample_modules():
    GRADIENT_OPTIONS.update(getattr(_module, "GRADIENT_OPTIONS", {}))
    HOST_INPUTS.update(getattr(_module, "HOST_INPUTS", {}))
