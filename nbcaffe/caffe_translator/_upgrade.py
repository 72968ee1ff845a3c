"""Reading Caffe files and upgrading legacy (V1) nets to the current layer format.

Caffe's own tools (``upgrade_net_proto_text`` / ``_binary``) turn a V1 net -- ``layers``
with enum types, per-blob ``blobs_lr`` / ``weight_decay`` -- into ``layer`` entries with
string types and ``param`` specs; :func:`upgrade_v1` does the same here, so a V1 model and its
upgraded copy translate to the same NetDef.  The net-level ``input`` / ``input_dim``
declaration is kept as it is (the translator reads it directly).  V0 layers (a ``layer``
nested inside a V1 layer, pre-2014 files) are refused with a clear error.
"""

from __future__ import annotations

import logging
import os

from google.protobuf import message as _message
from google.protobuf import text_format

from nbcaffe.caffe_translator._core import CaffeFormatError
from nbcaffe.proto import caffe_pb2

log = logging.getLogger("nbcaffe.caffe_translator")

V1 = caffe_pb2.V1LayerParameter

# V1 enum -> current type string (Caffe's UpgradeV1LayerType)
V1_TYPES = {
    V1.ABSVAL: "AbsVal", V1.ACCURACY: "Accuracy", V1.ARGMAX: "ArgMax", V1.BNLL: "BNLL", V1.CONCAT: "Concat",
    V1.CONTRASTIVE_LOSS: "ContrastiveLoss", V1.CONVOLUTION: "Convolution", V1.DATA: "Data",
    V1.DECONVOLUTION: "Deconvolution", V1.DROPOUT: "Dropout", V1.DUMMY_DATA: "DummyData",
    V1.EUCLIDEAN_LOSS: "EuclideanLoss", V1.ELTWISE: "Eltwise", V1.EXP: "Exp", V1.FLATTEN: "Flatten",
    V1.HDF5_DATA: "HDF5Data", V1.HDF5_OUTPUT: "HDF5Output", V1.HINGE_LOSS: "HingeLoss", V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData", V1.INFOGAIN_LOSS: "InfogainLoss", V1.INNER_PRODUCT: "InnerProduct",
    V1.LRN: "LRN", V1.MEMORY_DATA: "MemoryData", V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    V1.MVN: "MVN", V1.POOLING: "Pooling", V1.POWER: "Power", V1.RELU: "ReLU", V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", V1.SILENCE: "Silence", V1.SOFTMAX: "Softmax",
    V1.SOFTMAX_LOSS: "SoftmaxWithLoss", V1.SPLIT: "Split", V1.SLICE: "Slice", V1.TANH: "TanH",
    V1.WINDOW_DATA: "WindowData", V1.THRESHOLD: "Threshold",
}

# per-layer parameter messages present in both formats (same message types)
SHARED_PARAMS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param", "convolution_param",
    "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "exp_param", "hdf5_data_param",
    "hdf5_output_param", "hinge_loss_param", "image_data_param", "infogain_loss_param", "inner_product_param",
    "lrn_param", "memory_data_param", "mvn_param", "pooling_param", "power_param", "relu_param",
    "sigmoid_param", "softmax_param", "slice_param", "tanh_param", "threshold_param", "window_data_param",
    "transform_param", "loss_param",
)


def upgrade_v1_layer(v1, index: int) -> caffe_pb2.LayerParameter:
    """One V1LayerParameter as a current LayerParameter (Caffe's UpgradeV1LayerParameter)."""
    where = f"V1 layer #{index} '{v1.name}'"
    if v1.HasField("layer"):
        raise CaffeFormatError(f"{where} holds a V0 layer definition (a pre-2014 Caffe file); upgrade it with"
                               f" Caffe's upgrade_net_proto_text/binary first")
    layer = caffe_pb2.LayerParameter()
    layer.name = v1.name
    if v1.HasField("type"):
        if v1.type not in V1_TYPES:
            raise CaffeFormatError(f"{where}: layer type {V1.LayerType.Name(v1.type)} has no current equivalent")
        layer.type = V1_TYPES[v1.type]
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.blobs.extend(v1.blobs)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.loss_weight.extend(v1.loss_weight)
    count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(count):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    for field in SHARED_PARAMS:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))
    return layer


def upgrade_v1(net: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """A copy of ``net`` with its V1 ``layers`` upgraded into ``layer`` (a current net is
    returned as is).  Mixing both fields is an error, as in Caffe."""
    if not len(net.layers):
        return net
    if len(net.layer):
        raise CaffeFormatError(f"net '{net.name}' has both current 'layer' ({len(net.layer)}) and legacy V1 'layers'"
                               f" ({len(net.layers)}) entries; Caffe refuses such files too")
    upgraded = caffe_pb2.NetParameter()
    upgraded.CopyFrom(net)
    del upgraded.layers[:]
    for i, v1 in enumerate(net.layers):
        upgraded.layer.append(upgrade_v1_layer(v1, i))
    return upgraded


def parse_prototxt(text, what="prototxt") -> caffe_pb2.NetParameter:
    """A NetParameter from Caffe's text format.

    Fields outside this schema (layer parameters of other Caffe forks) are skipped with a
    warning naming the first one, so such a net still loads and its unsupported layers are
    reported by type; any other syntax error raises CaffeFormatError with the line.
    """
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, net)
        return net
    except text_format.ParseError as strict_error:
        first = str(strict_error)
        if "has no field named" not in first:
            raise CaffeFormatError(f"{what}: not a valid Caffe NetParameter in text format: {first}") from None
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise CaffeFormatError(f"{what}: not a valid Caffe NetParameter in text format: {exc}") from None
    log.warning("%s: skipped fields unknown to nbcaffe's caffe.proto (first: %s)", what, first)
    return net


def parse_caffemodel(data, what="caffemodel") -> caffe_pb2.NetParameter:
    """A NetParameter from a binary .caffemodel (CaffeFormatError naming ``what`` otherwise)."""
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(bytes(data))
    except (_message.DecodeError, RuntimeError) as exc:
        raise CaffeFormatError(f"{what}: {len(data)} bytes are not a binary Caffe NetParameter (.caffemodel):"
                               f" {exc}") from None
    if not len(net.layer) and not len(net.layers) and len(data):
        raise CaffeFormatError(f"{what}: parses as a NetParameter but holds no layers ({len(data)} bytes); is it"
                               f" a .caffemodel?")
    return net


def as_current(source, kind) -> caffe_pb2.NetParameter:
    """A current-format NetParameter from a NetParameter, a path, bytes or prototxt text.

    ``kind`` is "prototxt" (text) or "caffemodel" (binary) and decides how files, bytes and
    strings are parsed.
    """
    if isinstance(source, caffe_pb2.NetParameter):
        return upgrade_v1(source)
    if isinstance(source, str) and kind == "prototxt" and ("{" in source or ":" in source) \
            and not os.path.exists(source):
        return upgrade_v1(parse_prototxt(source))
    if isinstance(source, (bytes, bytearray)):
        if kind == "caffemodel":
            return upgrade_v1(parse_caffemodel(source))
        try:
            return upgrade_v1(parse_prototxt(bytes(source).decode("utf-8")))
        except UnicodeDecodeError:
            raise CaffeFormatError("prototxt bytes are not UTF-8 text (a binary .caffemodel given as the"
                                   " prototxt?)") from None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise CaffeFormatError(f"cannot read the {kind} '{path}': {exc.strerror or exc}") from None
        if kind == "caffemodel":
            return upgrade_v1(parse_caffemodel(data, path))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CaffeFormatError(f"{path}: not a text prototxt (not UTF-8; a binary .caffemodel given as the"
                                   f" prototxt?)") from None
        return upgrade_v1(parse_prototxt(text, path))
    raise TypeError(f"expected a caffe_pb2.NetParameter, a path, bytes or prototxt text for the {kind},"
                    f" got {type(source).__name__}")
