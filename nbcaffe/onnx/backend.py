"""nbcaffe as an ONNX backend (Caffe2's ``caffe2.python.onnx.backend``).

    >>> from nbcaffe.onnx import backend
    >>> rep = backend.prepare(onnx.load("model.onnx"), device="CPU")   # doctest: +SKIP
    >>> outputs = rep.run([x])                                           # doctest: +SKIP
    >>> outputs[0], outputs["prob"]                                      # doctest: +SKIP

:class:`NbcaffeBackend` subclasses ``onnx.backend.base.Backend``, so ONNX's official
``onnx.backend.test.BackendTest`` runs it (tests/onnx/test_backend_conformance.py).
The ONNX graph is converted to Caffe2 NetDefs by :mod:`nbcaffe.onnx.converter`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx.backend.base import Backend, Device, DeviceType

from nbcaffe import dispatch
from nbcaffe.onnx import converter, helper
from nbcaffe.onnx.backend_rep import NbcaffeRep


class NbcaffeBackend(Backend):
    """ONNX backend running models as Caffe2 nets on nbcaffe's kernels."""

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """CPU always; CUDA when a GPU (or the numba CUDA simulator) is usable."""
        kind = Device(device).type
        if kind == DeviceType.CPU:
            return True
        if kind == DeviceType.CUDA:
            return dispatch.cuda_available()
        return False

    @classmethod
    def prepare(cls, model, device="CPU", opset_version=None, **kwargs):
        """Convert ``model`` (ModelProto, bytes or a path) and return a rep with ``.run(inputs)``.

        Args:
            model: the ONNX model.
            device: 'CPU' or 'CUDA[:id]'.
            opset_version: override the model's default-domain opset.
        """
        if isinstance(model, str):
            model = onnx.load(model)
        elif isinstance(model, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(model))
        onnx.checker.check_model(model)
        if not cls.supports_device(device):
            raise helper.OnnxConversionError(f"device '{device}' is not available to nbcaffe here")
        return NbcaffeRep(model, helper.device_option_for(device), opset_version=opset_version)

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, opset_version=None, **kwargs):
        """Run one NodeProto on ``inputs`` (list in the node's input order, or dict by name)."""
        super().run_node(node, inputs, device=device, **({"opset_version": opset_version} if opset_version else {}))
        names = [n for n in node.input if n]
        if isinstance(inputs, dict):
            values = [inputs[n] for n in names]
        else:
            values = list(inputs)
        graph_inputs = []
        for name, value in zip(names, values):
            array = np.asarray(value)
            graph_inputs.append(onnx.helper.make_tensor_value_info(
                name, helper.onnx_elem_type(array.dtype), array.shape))
        outputs = []
        for j, name in enumerate(o for o in node.output if o):
            if outputs_info is not None and j < len(outputs_info):
                dtype, shape = outputs_info[j]
                outputs.append(onnx.helper.make_tensor_value_info(name, helper.onnx_elem_type(dtype), shape))
            else:
                outputs.append(onnx.helper.make_empty_tensor_value_info(name))
        graph = onnx.helper.make_graph([node], "run_node", graph_inputs, outputs)
        opset = opset_version or onnx.defs.onnx_opset_version()
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        rep = NbcaffeRep(model, helper.device_option_for(device), opset_version=opset)
        return rep.run(values)

    @classmethod
    def onnx_graph_to_caffe2_net(cls, model, device="CPU", opset_version=None, **kwargs):
        """(init_net, predict_net) for ``model``; see :func:`nbcaffe.onnx.converter.onnx_graph_to_caffe2_net`."""
        return converter.onnx_graph_to_caffe2_net(model, device, opset_version, **kwargs)


prepare = NbcaffeBackend.prepare
run_node = NbcaffeBackend.run_node
run_model = NbcaffeBackend.run_model
supports_device = NbcaffeBackend.supports_device
onnx_graph_to_caffe2_net = NbcaffeBackend.onnx_graph_to_caffe2_net

# Caffe2's names, for code written against caffe2.python.onnx.backend
Caffe2Backend = NbcaffeBackend
