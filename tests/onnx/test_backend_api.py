"""nbcaffe.onnx.backend API: prepare/run/run_model/run_node/supports_device, the NetDefs of
onnx_graph_to_caffe2_net, opset-dependent conversions, specialisation on attribute-like
inputs, errors that name the node and the shapes."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from google.protobuf import text_format  # noqa: E402
from onnx import TensorProto  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from nbcaffe import workspace  # noqa: E402
from nbcaffe.onnx import backend, onnx_graph_to_caffe2_net  # noqa: E402
from nbcaffe.onnx.helper import OnnxConversionError  # noqa: E402
from nbcaffe.proto import caffe2_pb2  # noqa: E402
from tests._paths import shared_data  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _model(nodes, inputs, outputs, opset, initializers=()):
    graph = oh.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 10  # ONNX Runtime here reads IR <= 13; IR >= 4 lets initializers stay off the inputs
    return model


def _vi(name, shape, elem=TensorProto.FLOAT):
    return oh.make_tensor_value_info(name, elem, shape)


def _light_input(model):
    initializers = {t.name for t in model.graph.initializer}
    vi = next(v for v in model.graph.input if v.name not in initializers)
    shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return vi.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


# ---------------------------------------------------------------------------- API


def test_prepare_run_forms_and_named_outputs(tmp_path):
    model = _model([oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Neg", ["r"], ["n"])],
                   [_vi("x", [2, 3])], [_vi("r", [2, 3]), _vi("n", [2, 3])], 13)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    for source in (model, model.SerializeToString(), str(path)):
        rep = backend.prepare(source, "CPU")
        for inputs in ([x], (x,), {"x": x}, x):
            out = rep.run(inputs)
            np.testing.assert_array_equal(out[0], np.maximum(x, 0))
            np.testing.assert_array_equal(out["n"], -np.maximum(x, 0))
            assert out.n is out[1]
    np.testing.assert_array_equal(backend.run_model(model, [x])[1], -np.maximum(x, 0))


def test_run_node_and_supports_device():
    node = oh.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    (y,) = backend.run_node(node, [x, w])
    expected = ReferenceEvaluator(_model([node], [_vi("x", x.shape), _vi("w", w.shape)], [_vi("y", None)], 13)) \
        .run(None, {"x": x, "w": w})[0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    (z,) = backend.run_node(oh.make_node("Add", ["a", "b"], ["c"]), {"a": x, "b": x},
                            outputs_info=[(np.float32, x.shape)])
    np.testing.assert_array_equal(z, 2 * x)
    assert backend.supports_device("CPU")
    assert backend.supports_device("CUDA") in (True, False)


def test_run_checks_input_dtype_and_shape():
    rep = backend.prepare(_model([oh.make_node("Relu", ["x"], ["y"])], [_vi("x", [2, 3])], [_vi("y", [2, 3])], 13))
    with pytest.raises(Exception, match="'x': expected float32, got float64"):
        rep.run([np.zeros((2, 3))])
    with pytest.raises(Exception, match=r"'x': expected shape \(2, 3\), got \(3, 2\)"):
        rep.run([np.zeros((3, 2), np.float32)])


def test_onnx_graph_to_caffe2_net_light_model_runs_in_a_workspace():
    model = onnx.load(os.path.join(LIGHT, "light_squeezenet.onnx"))
    init_net, predict_net = onnx_graph_to_caffe2_net(model, "CPU")
    assert isinstance(init_net, caffe2_pb2.NetDef) and isinstance(predict_net, caffe2_pb2.NetDef)
    init_types = {op.type for op in init_net.op}
    assert "ConstantFill" in init_types  # ConstantOfShape weights folded into the init net
    assert {op.type for op in predict_net.op} >= {"Conv", "Relu", "MaxPool", "Concat", "AveragePool", "Softmax"}
    name, x = _light_input(model)
    ws = workspace.Workspace("light")
    ws.run_net_once(init_net)
    ws.feed_blob(name, x)
    ws.run_net_once(predict_net)
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, "light_squeezenet_output_0.pb")))
    np.testing.assert_allclose(ws.fetch_blob(predict_net.external_output[0]), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["resnet50", "inception_v1", "densenet121", "shufflenet"])
def test_caffe2_own_conversion_of_light_models_agrees(name):
    """Real Caffe2's backend converted the same light models (../shared): its NetDefs run in
    nbcaffe give what nbcaffe's own conversion gives."""
    folder = shared_data("caffe2", "onnx_light_converted_by_caffe2", name)
    nets = []
    for stem in ("init_net", "predict_net"):
        net = caffe2_pb2.NetDef()
        text_format.Parse((folder / f"{stem}.pbtxt").read_text(), net)
        nets.append(net)
    model = onnx.load(os.path.join(LIGHT, f"light_{name}.onnx"))
    input_name, x = _light_input(model)
    ws = workspace.Workspace("caffe2_converted")
    ws.run_net_once(nets[0])
    ws.feed_blob(input_name, x)
    ws.run_net_once(nets[1])
    theirs = ws.fetch_blob(nets[1].external_output[0])
    ours = backend.prepare(model).run([x])[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------- opsets

_X3 = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
_X4 = np.random.default_rng(4).standard_normal((1, 2, 4, 6)).astype(np.float32)


def _opset_cases():
    i64 = TensorProto.INT64
    c = oh.make_tensor
    return [
        # (id, opset, nodes, inputs {name: array}, initializers)
        ("softmax_flattens_before_13", 11, [oh.make_node("Softmax", ["x"], ["y"], axis=1)], {"x": _X3}, [], "ort"),
        ("softmax_single_axis_from_13", 13, [oh.make_node("Softmax", ["x"], ["y"], axis=1)], {"x": _X3}, []),
        ("logsoftmax_11", 11, [oh.make_node("LogSoftmax", ["x"], ["y"], axis=1)], {"x": _X3}, [], "ort"),
        ("logsoftmax_13", 13, [oh.make_node("LogSoftmax", ["x"], ["y"], axis=1)], {"x": _X3}, []),
        ("reshape_attr_1", 1, [oh.make_node("Reshape", ["x"], ["y"], shape=[4, -1])], {"x": _X3}, [],
         lambda x: [x.reshape(4, -1)]),
        ("reshape_input_5", 5, [oh.make_node("Reshape", ["x", "s"], ["y"])], {"x": _X3},
         [c("s", i64, [2], [0, -1])]),
        ("slice_attrs_9", 9, [oh.make_node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, -1], axes=[2, 1])],
         {"x": _X3}, []),
        ("slice_inputs_steps_13", 13, [oh.make_node("Slice", ["x", "s", "e", "a", "p"], ["y"])], {"x": _X3},
         [c("s", i64, [2], [-1, 0]), c("e", i64, [2], [-100, 2]), c("a", i64, [2], [2, 0]),
          c("p", i64, [2], [-2, 1])]),
        ("squeeze_attr_11", 11, [oh.make_node("Squeeze", ["x"], ["y"], axes=[0])], {"x": _X4}, []),
        ("squeeze_input_13", 13, [oh.make_node("Squeeze", ["x", "a"], ["y"])], {"x": _X4}, [c("a", i64, [1], [0])]),
        ("unsqueeze_attr_11", 11, [oh.make_node("Unsqueeze", ["x"], ["y"], axes=[1, -1])], {"x": _X3}, []),
        ("unsqueeze_input_13", 13, [oh.make_node("Unsqueeze", ["x", "a"], ["y"])], {"x": _X3},
         [c("a", i64, [2], [1, -1])]),
        ("split_attr_11", 11, [oh.make_node("Split", ["x"], ["y", "z"], axis=2, split=[1, 3])], {"x": _X3}, []),
        ("split_input_13", 13, [oh.make_node("Split", ["x", "s"], ["y", "z"], axis=2)], {"x": _X3},
         [c("s", i64, [2], [3, 1])]),
        ("split_num_outputs_18", 18, [oh.make_node("Split", ["x"], ["y", "z"], axis=1, num_outputs=2)], {"x": _X3}, []),
        ("pad_attrs_2", 2, [oh.make_node("Pad", ["x"], ["y"], pads=[0, 1, 0, 0, 2, 1], mode="reflect")], {"x": _X3},
         []),
        ("pad_inputs_11", 11, [oh.make_node("Pad", ["x", "p", "v"], ["y"])], {"x": _X3},
         [c("p", i64, [6], [0, 1, 2, 0, 0, 1]), c("v", TensorProto.FLOAT, [], [1.5])]),
        ("pad_axes_18", 18, [oh.make_node("Pad", ["x", "p", "", "a"], ["y"], mode="edge")], {"x": _X3},
         [c("p", i64, [2], [1, 2]), c("a", i64, [1], [-1])]),
        ("clip_attrs_6", 6, [oh.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)], {"x": _X3}, []),
        ("clip_inputs_11", 11, [oh.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"x": _X3},
         [c("lo", TensorProto.FLOAT, [], [-0.2]), c("hi", TensorProto.FLOAT, [], [0.3])]),
        ("upsample_attr_7", 7, [oh.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 3.0])], {"x": _X4}, [],
         "ort"),
        ("upsample_input_9", 9, [oh.make_node("Upsample", ["x", "s"], ["y"], mode="linear")], {"x": _X4},
         [c("s", TensorProto.FLOAT, [4], [1.0, 1.0, 2.0, 2.0])], "ort"),
        ("resize_10", 10, [oh.make_node("Resize", ["x", "s"], ["y"])], {"x": _X4},
         [c("s", TensorProto.FLOAT, [4], [1.0, 1.0, 0.5, 0.5])], "ort"),
        ("resize_linear_half_pixel_13", 13, [oh.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")], {"x": _X4},
         [c("s", TensorProto.FLOAT, [4], [1.0, 1.0, 1.5, 0.5])]),
        ("batchnorm_is_test_6", 6, [oh.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], is_test=1)],
         {"x": _X4}, [c("g", TensorProto.FLOAT, [2], [1.5, 0.5]), c("b", TensorProto.FLOAT, [2], [0.1, -0.2]),
                      c("m", TensorProto.FLOAT, [2], [0.3, -0.1]), c("v", TensorProto.FLOAT, [2], [2.0, 0.5])]),
        ("dropout_ratio_input_12", 12, [oh.make_node("Dropout", ["x", "r"], ["y", "mask"])], {"x": _X3},
         [c("r", TensorProto.FLOAT, [], [0.3])]),
        ("dropout_mask_7", 7, [oh.make_node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], {"x": _X3}, []),
        ("gemm_broadcast_6", 6, [oh.make_node("Gemm", ["a", "b", "c"], ["y"], broadcast=1, transB=1, alpha=2.0)],
         {"a": _X3[0]}, [c("b", TensorProto.FLOAT, [5, 4], np.arange(20) / 10), c("c", TensorProto.FLOAT, [5],
                                                                                  np.arange(5))]),
        ("add_legacy_broadcast_6", 6, [oh.make_node("Add", ["x", "b"], ["y"], broadcast=1, axis=1)], {"x": _X3},
         [c("b", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])], lambda x: [x + np.array([1, 2, 3], np.float32)[:, None]]),
        ("reducesum_attr_11", 11, [oh.make_node("ReduceSum", ["x"], ["y"], axes=[1], keepdims=0)], {"x": _X3}, []),
        ("reducesum_input_13", 13, [oh.make_node("ReduceSum", ["x", "a"], ["y"], keepdims=0)], {"x": _X3},
         [c("a", i64, [1], [1])]),
        ("reducemean_input_18", 18, [oh.make_node("ReduceMean", ["x", "a"], ["y"])], {"x": _X3},
         [c("a", i64, [2], [0, -1])]),
        ("argmax_select_last_12", 12, [oh.make_node("ArgMax", ["x"], ["y"], axis=1, select_last_index=1)],
         {"x": np.array([[1, 3, 3], [2, 2, 0]], np.float32)}, []),
    ]


_OPSET_CASES = _opset_cases()


@pytest.mark.parametrize("case", _OPSET_CASES, ids=[c[0] for c in _OPSET_CASES])
def test_opset_versions_match_the_onnx_reference(case):
    """Old and new versions of the ops whose signature changed.  Oracle: ONNX's reference
    evaluator, ONNX Runtime where the reference lacks the old version, or NumPy below opset 7
    (ONNX Runtime's floor)."""
    _id, opset, nodes, feeds, inits, *oracle = case
    outputs = [o for n in nodes for o in n.output if o]
    inputs = [_vi(k, v.shape) for k, v in feeds.items()]
    untyped = _model(nodes, inputs, [_vi(o, None) for o in outputs], opset, inits)
    if not oracle:
        expected = ReferenceEvaluator(untyped).run(None, feeds)
    elif oracle[0] == "ort":
        ort = pytest.importorskip("onnxruntime")
        expected = ort.InferenceSession(untyped.SerializeToString(), providers=["CPUExecutionProvider"]) \
            .run(None, feeds)
    else:
        expected = oracle[0](*feeds.values())
    typed = [_vi(o, e.shape, onnx.helper.np_dtype_to_tensor_dtype(e.dtype)) for o, e in zip(outputs, expected)]
    got = backend.prepare(_model(nodes, inputs, typed, opset, inits)).run(feeds)
    for o, e, g in zip(outputs, expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=o)
        assert g.dtype == e.dtype, o


# ---------------------------------------------------------------------------- specialisation


def _slice_model():
    return _model([oh.make_node("Slice", ["x", "starts", "ends"], ["y"])],
                  [_vi("x", [4, 5]), _vi("starts", [1], TensorProto.INT64), _vi("ends", [1], TensorProto.INT64)],
                  [_vi("y", [None, 5])], 13)


def test_attribute_like_graph_inputs_specialise_the_rep():
    rep = backend.prepare(_slice_model())
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    y1 = rep.run([x, np.array([1]), np.array([3])])[0]
    y2 = rep.run([x, np.array([-2]), np.array([100])])[0]
    y3 = rep.run([x, np.array([1]), np.array([3])])[0]
    np.testing.assert_array_equal(y1, x[1:3])
    np.testing.assert_array_equal(y2, x[-2:])
    np.testing.assert_array_equal(y3, x[1:3])
    assert len(rep._nets) == 2  # one net per distinct value, reused


def test_conversion_without_values_names_node_and_input():
    with pytest.raises(OnnxConversionError, match=r"ONNX node 'Slice_0' \(Slice, opset 13\): input 1 'starts'.*"
                                                  r"graph input.*known_inputs=\n  inputs: x \(4, 5\) float32"):
        onnx_graph_to_caffe2_net(_slice_model())
    init_net, predict_net = onnx_graph_to_caffe2_net(
        _slice_model(), known_inputs={"starts": np.array([1]), "ends": np.array([3])})
    assert [op.type for op in predict_net.op] == ["StridedSlice"]


def test_dynamic_batch_reshape_runs_without_specialisation():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape on a symbolic batch dim (a PyTorch
    export pattern) converts to runtime Shape/Gather/ExpandDims/Concat/Reshape ops."""
    i64 = TensorProto.INT64
    nodes = [oh.make_node("Shape", ["x"], ["s"]),
             oh.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             oh.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             oh.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             oh.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = [oh.make_tensor("zero", i64, [], [0]), oh.make_tensor("axes", i64, [1], [0]),
             oh.make_tensor("minus1", i64, [1], [-1])]
    model = _model(nodes, [_vi("x", ["N", 3, 4])], [_vi("y", ["N", 12])], 13, inits)
    rep = backend.prepare(model)
    assert rep.predict_net is not None  # converted once at prepare
    for n in (2, 5):
        x = np.random.default_rng(n).standard_normal((n, 3, 4)).astype(np.float32)
        np.testing.assert_array_equal(rep.run([x])[0], x.reshape(n, 12))
    assert "Shape" in {op.type for op in rep.predict_net.op}


# ---------------------------------------------------------------------------- errors


def test_unsupported_operator_error_names_the_node():
    model = _model([oh.make_node("Einsum", ["x", "x"], ["y"], name="my_einsum", equation="ij,ij->i")],
                   [_vi("x", [2, 3])], [_vi("y", [2])], 13)
    with pytest.raises(OnnxConversionError, match="'my_einsum': operator Einsum .* not supported"):
        backend.prepare(model)


def test_unsupported_dtype_is_named():
    model = _model([oh.make_node("Relu", ["x"], ["y"])], [_vi("x", [2], TensorProto.FLOAT16)],
                   [_vi("y", [2], TensorProto.FLOAT16)], 13)
    with pytest.raises(OnnxConversionError, match="'x'.*FLOAT16"):
        backend.prepare(model)


def test_runtime_failure_names_the_op_and_shapes():
    model = _model([oh.make_node("Add", ["a", "b"], ["c"])], [_vi("a", ["N", 3]), _vi("b", ["M", 4])],
                   [_vi("c", ["N", 3])], 13)
    rep = backend.prepare(model)
    with pytest.raises(Exception, match=r"Add.*\n.*a \(2, 3\) float32.*b \(5, 4\) float32"):
        rep.run([np.zeros((2, 3), np.float32), np.zeros((5, 4), np.float32)])
