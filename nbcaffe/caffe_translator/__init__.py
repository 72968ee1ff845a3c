"""Caffe (Caffe1) models to nbcaffe/Caffe2 NetDefs: ``caffe_translator`` of Caffe2, extended.

    from nbcaffe import caffe_translator
    predict_net, params = caffe_translator.TranslateModel("deploy.prototxt", "weights.caffemodel")
    init_net = caffe_translator.ConvertTensorProtosToInitNet(params, predict_net.external_input[0])

or in one step ``init_net, predict_net = caffe_translator.TranslatePretrainedModel(prototxt,
caffemodel)``, or from the shell::

    python -m nbcaffe.caffe_translator deploy.prototxt weights.caffemodel \\
        --init_net init_net.pb --predict_net predict_net.pb [--remove_legacy_pad] [--text]

Accepted: current-format nets (``layer``) and legacy V1 nets (``layers``, upgraded as Caffe's
upgrade tools do), as NetParameter messages, file paths, prototxt text or caffemodel bytes.
Supported layer types are the keys of ``TranslatorRegistry.registry_``; docs/caffe-translator.md
lists how each maps and where the result deliberately differs from Caffe2's translator.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from google.protobuf import text_format

from nbcaffe import utils
from nbcaffe.caffe_translator import layers_activation, layers_conv, layers_norm, layers_shape  # noqa: F401
from nbcaffe.caffe_translator._core import (  # noqa: F401  (public names)
    CaffeFormatError,
    CaffeTranslationError,
    TranslatorRegistry,
    UnsupportedLayerError,
    blob_to_array,
    make_op,
    translate,
)
from nbcaffe.caffe_translator._upgrade import as_current, parse_caffemodel, parse_prototxt, upgrade_v1  # noqa: F401
from nbcaffe.proto import caffe2_pb2

__all__ = ["TranslateModel", "TranslatePretrainedModel", "TranslatorRegistry", "ConvertTensorProtosToInitNet",
           "CaffeTranslationError", "UnsupportedLayerError", "CaffeFormatError", "save_nets", "upgrade_v1",
           "supported_layer_types"]


def TranslateModel(caffe_net, pretrained_net, is_test=True, remove_legacy_pad=False, input_dims=None,
                   net_state=None):
    """Translate a Caffe net and its weights: ``(predict NetDef, TensorProtos of parameters)``.

    Args:
        caffe_net: the deploy net -- a ``caffe_pb2.NetParameter``, a prototxt path, or
            prototxt text.
        pretrained_net: the weights -- a NetParameter, a .caffemodel path or its bytes; or
            None for a net without learned parameters.
        is_test: translate for inference (Dropout/BatchNorm in test mode, layers included
            by the TEST phase rules); False gives the training forms (Caffe2's default).
        remove_legacy_pad: write Caffe's ceil-mode pooling as explicit bottom/right pads
            (``legacy_pad`` dropped), for the known input shapes.
        input_dims: input shape(s) overriding the prototxt: a list of ints for the first
            input, or ``{input name: dims}``.
        net_state: a ``caffe_pb2.NetState`` for the include/exclude rules (default: the
            net's own state with phase TEST or TRAIN per ``is_test``).

    Returns:
        ``(net, params)``: ``net.external_input`` lists the net inputs then every parameter,
        ``net.external_output`` Caffe's outputs (blobs produced and never consumed).

    Raises:
        UnsupportedLayerError naming the layer and its type; CaffeFormatError for files
        that do not parse or blobs that do not fit; CaffeTranslationError otherwise.

    Example:
        >>> net, params = TranslateModel(prototxt_text, None)   # doctest: +SKIP
    """
    net, params, _ = translate(caffe_net, pretrained_net, is_test, net_state, remove_legacy_pad, input_dims)
    return net, params


def ConvertTensorProtosToInitNet(net_params, input_name=None, input_shapes=None):
    """An init NetDef: a GivenTensorFill per parameter, plus a ConstantFill placeholder for
    each input (Caffe2's translator added one, of shape [1], for the first input).

    Args:
        net_params: TensorProtos from :func:`TranslateModel` (float32 tensors).
        input_name: an input blob name or a list of them (None: no placeholder).
        input_shapes: ``{input name: shape}`` for the placeholders (default shape [1]).
    """
    init_net = caffe2_pb2.NetDef()
    for tensor in net_params.protos:
        values = utils.Caffe2TensorToNumpyArray(tensor)
        if values.dtype != np.float32:
            raise CaffeTranslationError(f"parameter '{tensor.name}' is {values.dtype}; only float32 parameters"
                                        f" become GivenTensorFill ops")
        op = init_net.op.add()
        op.type = "GivenTensorFill"
        op.output.append(tensor.name)
        op.arg.append(utils.MakeArgument("shape", [int(d) for d in tensor.dims]))
        arg = op.arg.add()
        arg.name = "values"
        arg.floats.extend(values.reshape(-1).tolist())
    names = [input_name] if isinstance(input_name, str) else list(input_name or [])
    for name in names:
        shape = (input_shapes or {}).get(name) or [1]
        op = init_net.op.add()
        op.type = "ConstantFill"
        op.output.append(name)
        op.arg.append(utils.MakeArgument("shape", [int(d) for d in shape]))
    return init_net


def TranslatePretrainedModel(caffe_net, pretrained_net, is_test=True, remove_legacy_pad=False, input_dims=None,
                             net_state=None):
    """``(init_net, predict_net)`` ready to run: the init net fills every parameter and a
    zero placeholder of each input's declared shape; see :func:`TranslateModel`."""
    net, params, shapes = translate(caffe_net, pretrained_net, is_test, net_state, remove_legacy_pad, input_dims)
    inputs = list(net.external_input[:len(shapes)])
    init_net = ConvertTensorProtosToInitNet(params, inputs, {k: v for k, v in shapes.items() if v is not None})
    init_net.name = f"{net.name}_init" if net.name else "init"
    return init_net, net


def supported_layer_types() -> list:
    """Caffe layer types with a registered translator."""
    return sorted(TranslatorRegistry.registry_)


def _write_atomically(path, data: bytes):
    """Write ``data`` to ``path`` through a temporary file in the same folder + rename, so
    the path holds either its old content or the complete new file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def save_nets(init_net, predict_net, init_path, predict_path, text=False):
    """Write both NetDefs (binary, or protobuf text with ``text=True``) atomically."""
    for net, path in ((init_net, init_path), (predict_net, predict_path)):
        data = text_format.MessageToString(net).encode("utf-8") if text else net.SerializeToString()
        _write_atomically(path, data)
