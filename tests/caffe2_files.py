"""The real Caffe2 files under ../shared/testdata/caffe2/: what each pair is, its input and the
stored outputs of the real Caffe2, plus the tools the CUDA checks use to run each distinct op of
a big net on small slices of its real inputs.

Folders (each has a README): translated_from_caffe1 (Caffe2's own translator, run in Caffe2),
pytorch_onnx_lenet and squeezenet_trafficlight (real weights found in the wild),
zoo_predict_nets (the model zoo's predict nets with the constant-weight init nets rebuilt from
ONNX's light models) and onnx_light_converted_by_caffe2 (Caffe2's ONNX backend output for the
same light models; the expected outputs are the light models' own, shipped in the onnx wheel,
which Caffe2 reproduced exactly except for squeezenet, where Caffe2 had a bug).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from nbcaffe import utils
from tests._paths import TESTDATA

ROOT = TESTDATA / "caffe2"
TRANSLATED = ["lenet_mnist", "cifar10_quick_v1", "mtcnn_det1", "mtcnn_det2", "mtcnn_det3"]
OPENCV_LAYERS = ["layer_batch_norm", "layer_convolution", "layer_lrn_channels", "layer_pooling_ave",
                 "layer_pooling_max", "layer_prelu", "layer_softmax"]
ZOO = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "vgg19", "zfnet512"]
LIGHT = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
         "vgg19", "zfnet512"]
# zoo folders without an init net (weights were Git-LFS pointers) and with ops nbcaffe lacks
ZOO_WITHOUT_INIT = ["detectron_e2e_faster_rcnn_R-50-C4_1x", "mask_rcnn_2go_fp32", "mask_rcnn_2go_int8"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One init/predict pair: files, the input to feed and where the expected outputs are."""

    id: str
    folder: pathlib.Path
    init: str
    predict: str
    kind: str  # "npy" (input.npy + caffe2.<blob>.npy), "zoo" or "light"

    def nets(self):
        return utils.read_net(self.folder / self.init), utils.read_net(self.folder / self.predict)

    def feeds_and_expected(self, predict_net):
        """({input blob: array}, {output blob: expected array})."""
        if self.kind == "npy":
            x = np.load(self.folder / "input.npy")
            expected = {}
            for path in sorted(self.folder.glob("caffe2.*.npy")):
                stem = path.name[len("caffe2."):-len(".npy")]
                expected[_output_named(predict_net, stem)] = np.load(path)
            return {predict_net.external_input[0]: x}, expected
        if self.kind == "zoo":
            (name, (_, shape)), = json.loads((self.folder / "value_info.json").read_text()).items()
            expected = {}
            for path in sorted(self.folder.glob("caffe2.const002.*.npy")):
                stem = path.name[len("caffe2.const002."):-len(".npy")]
                expected[_output_named(predict_net, stem)] = np.load(path)
            return {name: ramp(shape)}, expected
        return light_feeds_and_expected(self.folder.name, predict_net)


def ramp(shape):
    """ONNX's backend-test input for the light models: arange(n) / n in the given shape."""
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def light_feeds_and_expected(model, predict_net):
    import onnx
    from onnx import numpy_helper

    light = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    graph = onnx.load(str(light / f"light_{model}.onnx")).graph
    initialized = {t.name for t in graph.initializer}
    (data,) = [i for i in graph.input if i.name not in initialized]
    shape = [d.dim_value for d in data.type.tensor_type.shape.dim]
    out = onnx.TensorProto()
    out.ParseFromString((light / f"light_{model}_output_0.pb").read_bytes())
    return {data.name: ramp(shape)}, {predict_net.external_output[0]: numpy_helper.to_array(out)}


def _output_named(predict_net, stem):
    """The external output a stored file name stands for ('gpu_0_softmax' is 'gpu_0/softmax')."""
    for name in predict_net.external_output:
        if stem in (name, name.replace("/", "_"), f"output_{name}"):  # output_26.npy holds blob "26"
            return name
    raise AssertionError(f"{stem}: not an external output of {predict_net.name} ({list(predict_net.external_output)})")


def cases():
    found = []
    for name in TRANSLATED:
        found.append(Case(f"translated/{name}", ROOT / "translated_from_caffe1" / name, "init_net.pb",
                          "predict_net.pb", "npy"))
    for name in OPENCV_LAYERS:
        found.append(Case(f"translated/{name}", ROOT / "translated_from_caffe1" / "opencv_layer_tests" / name,
                          "init_net.pb", "predict_net.pb", "npy"))
    for name in ("pytorch_onnx_lenet", "squeezenet_trafficlight"):
        found.append(Case(name, ROOT / name, "init_net.pb", "predict_net.pb", "npy"))
    for name in ZOO:
        found.append(Case(f"zoo/{name}", ROOT / "zoo_predict_nets" / name, "init_net_const002.pbtxt",
                          "predict_net.pbtxt", "zoo"))
    for name in LIGHT:
        found.append(Case(f"light/{name}", ROOT / "onnx_light_converted_by_caffe2" / name, "init_net.pbtxt",
                          "predict_net.pbtxt", "light"))
    return found


# ----------------------------------------------------------------------------- CUDA slices
# The CUDA simulator runs one Python thread per CUDA thread (about 10k threads a second), so a
# 224x224 net cannot run whole there.  Instead every distinct op of such a net (type, engine,
# arguments, input ranks) runs once on CUDA and once on the CPU, on small slices of the inputs it
# saw in the real CPU run: the first image, a couple of channels (per group for convolutions), a
# small window of rows and columns, a few FC outputs.  Any consistent slice is a valid input, so
# the two devices must agree on it exactly as on the whole tensor.

SPATIAL = 3  # rows/cols kept by element-wise image ops
CHANNELS = 2  # channels kept per group
FC_OUTPUTS = 4


def signature(op):
    args = tuple(sorted((a.name, a.SerializeToString()) for a in op.arg))
    return (op.type, op.engine, args, len(op.input))


def _arg(op, name, default):
    for a in op.arg:
        if a.name == name:
            if a.ints:
                return tuple(a.ints)
            return a.i if a.HasField("i") else a.s.decode() if a.HasField("s") else a.f
    return default


def _window_span(op):
    """Rows/cols an image slice needs so that a kernel window fits (with two output positions)."""
    if _arg(op, "global_pooling", 0):
        return SPATIAL
    kernel = _arg(op, "kernel", None) or _arg(op, "kernels", None) or (_arg(op, "kernel_h", 1),)
    stride = _arg(op, "stride", None) or _arg(op, "strides", None) or (_arg(op, "stride_h", 1),)
    dilation = _arg(op, "dilation", None) or _arg(op, "dilations", None) or (1,)
    k, s, d = (max(v if isinstance(v, tuple) else (v,)) for v in (kernel, stride, dilation))
    return d * (k - 1) + 1 + s


def _image(x, channels, span):
    return np.ascontiguousarray(x[:1, channels, :span, :span])


def _channel_pick(c, groups=1):
    per = c // groups
    return np.array([g * per + j for g in range(groups) for j in range(min(per, CHANNELS))])


def slice_op(op, inputs):
    """(op, small inputs) for ``op`` cut from its real ``inputs``: the same OperatorDef except for
    a Reshape's ``shape`` argument, which follows the slice."""
    t = op.type
    x = inputs[0]
    if t == "Conv":
        group = _arg(op, "group", 1)
        w = inputs[1]
        pick_c = _channel_pick(x.shape[1], group)
        pick_m = _channel_pick(w.shape[0], group)
        out = [_image(x, pick_c, _window_span(op)), np.ascontiguousarray(w[pick_m][:, :len(pick_c) // group])]
        return op, out + [np.ascontiguousarray(b[pick_m]) for b in inputs[2:]]
    if t == "FC":
        axis = _arg(op, "axis", 1)
        rows = x.reshape(int(np.prod(x.shape[:axis])), -1)[:1, :16]
        w, axis_w = inputs[1], _arg(op, "axis_w", 1)
        if axis_w == 1:
            w = w.reshape(w.shape[0], -1)[:FC_OUTPUTS, :16]
        else:  # an old 4-D (1, 1, N, K) blob with axis_w=3 keeps its rank
            w = w[(0,) * (axis_w - 1) + (slice(0, FC_OUTPUTS), slice(0, 16))][(None,) * (axis_w - 1)]
        n = int(np.prod(w.shape[:axis_w]))
        return op, [np.ascontiguousarray(rows), np.ascontiguousarray(w), np.ascontiguousarray(inputs[2][:n])]
    if t == "Transpose":
        return op, [np.ascontiguousarray(x[tuple(slice(0, SPATIAL) for _ in x.shape)])]
    if t == "Reshape":
        return _slice_reshape(op, inputs)
    if x.ndim == 4 and x.size > CHANNELS * SPATIAL * SPATIAL:
        span = _window_span(op) if t in ("MaxPool", "AveragePool") else SPATIAL
        return op, [_slice_like(x, v, span) for v in inputs]
    if x.ndim == 2 and x.shape[1] > 16:
        return op, [np.ascontiguousarray(v[:1, :16]) if v.shape == x.shape else v for v in inputs]
    return op, inputs


def _slice_like(x, v, span):
    """Cut ``v`` the way the image ``x`` is cut: another image (its own channels, the same
    window), a per-channel vector or a broadcast operand aligned with the channel axis."""
    if v.ndim == 4 and v.shape[0] == x.shape[0] and v.shape[2:] == x.shape[2:]:
        return _image(v, _channel_pick(v.shape[1]), span)
    pick = _channel_pick(x.shape[1])
    if v.ndim >= 1 and v.shape[0] == x.shape[1]:  # (C,), (C, 1, 1)
        return np.ascontiguousarray(v[pick])
    if v.ndim == 4 and v.shape[1] == x.shape[1]:  # (1, C, 1, 1)
        return np.ascontiguousarray(v[:, pick])
    return v


def _slice_reshape(op, inputs):
    """Channel-shuffle reshapes keep their channels and lose their rows/cols; flattening reshapes
    keep a few channels of a small window."""
    x = inputs[0]
    given = _arg(op, "shape", None)
    shape = list(given) if given is not None else inputs[1].tolist()
    if x.size <= 4096:
        return op, inputs
    if x.ndim >= 4 and len(shape) >= 4 and tuple(shape[-2:]) == tuple(x.shape[-2:]):
        new_shape = shape[:-2] + [1, 1]
        small = np.ascontiguousarray(x[..., :1, :1])
    elif x.ndim == 4 and len(shape) == 2:
        small = _image(x, _channel_pick(x.shape[1]), 2)
        new_shape = [shape[0] if shape[0] in (-1, 0) else 1, small[0].size]
    else:
        raise AssertionError(f"no small slice for Reshape {x.shape} -> {shape}")
    if given is None:
        return op, [small, np.asarray(new_shape, dtype=inputs[1].dtype)]
    new_op = type(op)()
    new_op.CopyFrom(op)
    for a in new_op.arg:
        if a.name == "shape":
            a.ints[:] = new_shape
    return new_op, [small]
