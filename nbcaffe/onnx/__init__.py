"""ONNX interoperability (needs the ``onnx`` package; ``pip install nbcaffe[onnx]``).

* :mod:`nbcaffe.onnx.backend` -- run ONNX models: ``prepare(model, device)`` -> rep with
  ``.run(inputs)``; ``run_model``, ``run_node``, ``supports_device`` (Caffe2's backend API).
* :func:`onnx_graph_to_caffe2_net` -- ONNX model -> ``(init_net, predict_net)`` NetDefs.
* :mod:`nbcaffe.onnx.frontend` -- Caffe2 NetDefs -> ONNX ModelProto
  (``caffe2_net_to_onnx_model``).
"""

from __future__ import annotations


def onnx_graph_to_caffe2_net(model, device="CPU", opset_version=None, known_inputs=None, input_shapes=None):
    """ONNX ModelProto -> (init_net, predict_net); see :mod:`nbcaffe.onnx.converter`."""
    from nbcaffe.onnx import converter

    return converter.onnx_graph_to_caffe2_net(model, device, opset_version, known_inputs=known_inputs,
                                              input_shapes=input_shapes)


def caffe2_net_to_onnx_model(predict_net, init_net=None, value_info=None, **kwargs):
    """Caffe2 NetDefs -> ONNX ModelProto; see :mod:`nbcaffe.onnx.frontend`."""
    from nbcaffe.onnx import frontend

    return frontend.caffe2_net_to_onnx_model(predict_net, init_net, value_info, **kwargs)
