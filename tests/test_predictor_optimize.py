"""The Predictor's inference rewrites (nbcaffe/predictor/optimize.py): batch norms and per-channel
Mul/Add folded into the op before them, Conv + Relu as ConvRelu.  Every case compares with the
same net run as written (``optimize=False``) and checks what was (not) rewritten."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core
from nbcaffe.predictor import Predictor
from nbcaffe.proto import caffe2_pb2

F32 = np.float32


def _net(name, ops, inputs, outputs):
    net = caffe2_pb2.NetDef()
    net.name = name
    net.op.extend(ops)
    net.external_input.extend(inputs)
    net.external_output.extend(outputs)
    return net


def _init(params):
    ops = [core.CreateOperator("GivenTensorFill", [], [k], shape=list(v.shape), values=v.reshape(-1).tolist())
           for k, v in params.items()]
    return _net("init", ops, [], list(params))


def _bn_params(rng, prefix, c):
    return {f"{prefix}_s": rng.uniform(0.5, 2, c).astype(F32), f"{prefix}_b": rng.standard_normal(c).astype(F32),
            f"{prefix}_m": rng.standard_normal(c).astype(F32), f"{prefix}_v": rng.uniform(0.1, 3, c).astype(F32)}


def _bn(x, prefix, y, **args):
    return core.CreateOperator("SpatialBN", [x, f"{prefix}_s", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"], [y],
                               is_test=1, epsilon=1e-3, **args)


def _both(params, ops, inputs, outputs, feeds, **kwargs):
    """(optimized predictor, its outputs, the plain net's outputs)."""
    init = _init(params)
    net = _net("net", ops, inputs + list(params), outputs)
    original = net.SerializeToString()
    plain = Predictor(init, net, optimize=False, **kwargs)
    fast = Predictor(init, net, **kwargs)
    assert net.SerializeToString() == original  # the caller's NetDef is never changed
    assert fast.predict_net.SerializeToString() == original  # nor the predictor's copy of it
    assert plain.running_net is plain.predict_net
    want, got = plain.run(feeds), fast.run(feeds)
    for a, b in zip(want, got):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(np.abs(a).max()))
    return fast, got, want


def _types(p):
    return [op.type for op in p.running_net.op]


@pytest.mark.parametrize("order", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_relu_becomes_one_conv_relu(order, bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 8)).astype(F32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(F32)
    if order == "NHWC":
        x, w = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(0, 2, 3, 1))
    params = {"w": w, **_bn_params(rng, "bn", 5)}
    conv_in = ["x", "w"]
    if bias:
        params["b"] = rng.standard_normal(5).astype(F32)
        conv_in.append("b")
    ops = [core.CreateOperator("Conv", conv_in, ["c"], kernel=3, pad=1, order=order),
           _bn("c", "bn", "c", order=order),  # in place, as translated Caffe1 nets do
           core.CreateOperator("Relu", ["c"], ["c"])]
    fast, got, _ = _both(params, ops, ["x"], ["c"], {"x": x})
    assert _types(fast) == ["ConvRelu"]
    assert (got[0] == 0).any()
    # the parameters the user gave are untouched; the folded ones live under new names
    np.testing.assert_array_equal(fast.ws.fetch_blob("w"), w)
    assert all(name.startswith("__predictor_folded_") for name in fast.running_net.op[0].input[1:])


def test_scale_layers_fold_into_conv_and_batch_norm():
    """DenseNet's SpatialBN + Mul + Add + Relu, after a Conv and after a Concat."""
    rng = np.random.default_rng(1)
    c = 4
    params = {"w": rng.standard_normal((c, 2, 3, 3)).astype(F32), **_bn_params(rng, "bn1", c),
              "s1": rng.standard_normal(c).astype(F32), "t1": rng.standard_normal(c).astype(F32),
              **_bn_params(rng, "bn2", 2 + c), "s2": rng.standard_normal(2 + c).astype(F32),
              "t2": rng.standard_normal(2 + c).astype(F32)}
    bc = {"broadcast": 1, "axis": 1}
    ops = [core.CreateOperator("Conv", ["x", "w"], ["c1"], kernel=3, pad=1),
           _bn("c1", "bn1", "c1/bn"),
           core.CreateOperator("Mul", ["c1/bn", "s1"], ["c1/internal"], **bc),
           core.CreateOperator("Add", ["c1/internal", "t1"], ["c1/bn"], **bc),
           core.CreateOperator("Relu", ["c1/bn"], ["c1/bn"]),
           core.CreateOperator("Concat", ["x", "c1/bn"], ["cat", "cat_dims"]),
           _bn("cat", "bn2", "cat/bn"),
           core.CreateOperator("Mul", ["cat/bn", "s2"], ["cat/internal"], **bc),
           core.CreateOperator("Add", ["cat/internal", "t2"], ["cat/bn"], **bc),
           core.CreateOperator("Relu", ["cat/bn"], ["cat/bn"])]
    x = rng.standard_normal((2, 2, 7, 6)).astype(F32)
    fast, _, _ = _both(params, ops, ["x"], ["cat/bn"], {"x": x})
    assert _types(fast) == ["ConvRelu", "Concat", "SpatialBN", "Relu"]


def test_bias_add_folds_into_a_conv_without_bias():
    """PyTorch -> ONNX -> Caffe2 nets: Conv without bias, then a broadcast Add."""
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((3, 1, 5, 5)).astype(F32), "b": rng.standard_normal(3).astype(F32)}
    ops = [core.CreateOperator("Conv", ["x", "w"], ["11"], kernel=5),
           core.CreateOperator("Add", ["11", "b"], ["12"], broadcast=1, axis=1),
           core.CreateOperator("MaxPool", ["12"], ["13"], kernel=2, stride=2)]
    fast, _, _ = _both(params, ops, ["x"], ["13"], {"x": rng.standard_normal((2, 1, 12, 12)).astype(F32)})
    assert _types(fast) == ["Conv", "MaxPool"]


def _conv_bn_relu_params(rng):
    return {"w": rng.standard_normal((4, 3, 3, 3)).astype(F32), **_bn_params(rng, "bn", 4)}


def _conv_bn_relu(bn_out="bn", relu_out="r"):
    return [core.CreateOperator("Conv", ["x", "w"], ["c"], kernel=3, pad=1), _bn("c", "bn", bn_out),
            core.CreateOperator("Relu", [bn_out], [relu_out])]


def test_outputs_asked_for_are_never_fused_away():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 6, 6)).astype(F32)
    fast, got, want = _both(_conv_bn_relu_params(rng), _conv_bn_relu(), ["x"], ["r", "c"], {"x": x})
    assert _types(fast) == ["Conv", "SpatialBN", "Relu"]
    fast, got, want = _both(_conv_bn_relu_params(rng), _conv_bn_relu(), ["x"], ["r"], {"x": x},
                            output_names=["r", "bn"])
    assert _types(fast) == ["Conv", "Relu"]  # the BN folds, its output stays
    assert len(got) == 2


def test_values_read_twice_are_not_fused():
    rng = np.random.default_rng(4)
    ops = _conv_bn_relu() + [core.CreateOperator("Add", ["r", "bn"], ["out"])]  # bn read by Relu and Add
    fast, _, _ = _both(_conv_bn_relu_params(rng), ops, ["x"], ["out"], {"x": rng.standard_normal((1, 3, 6, 6))
                                                                        .astype(F32)})
    assert _types(fast) == ["Conv", "Relu", "Add"]


def test_reused_names_follow_values_not_names():
    """The conv output name is written again later: only the version the BN reads matters."""
    rng = np.random.default_rng(5)
    ops = _conv_bn_relu() + [core.CreateOperator("Conv", ["r", "w2"], ["c"], kernel=1),
                             core.CreateOperator("Relu", ["c"], ["out"])]
    params = {**_conv_bn_relu_params(rng), "w2": rng.standard_normal((2, 4, 1, 1)).astype(F32)}
    fast, _, _ = _both(params, ops, ["x"], ["out"], {"x": rng.standard_normal((2, 3, 5, 5)).astype(F32)})
    assert _types(fast) == ["ConvRelu", "ConvRelu"]


def test_per_position_mul_is_not_folded():
    rng = np.random.default_rng(6)
    params = {"w": rng.standard_normal((4, 3, 3, 3)).astype(F32), "s": rng.standard_normal(6).astype(F32)}
    ops = [core.CreateOperator("Conv", ["x", "w"], ["c"], kernel=3, pad=1),
           core.CreateOperator("Mul", ["c", "s"], ["m"], broadcast=1)]  # axis -1: along W
    fast, _, _ = _both(params, ops, ["x"], ["m"], {"x": rng.standard_normal((1, 3, 6, 6)).astype(F32)})
    assert _types(fast) == ["Conv", "Mul"]


def test_feeding_a_folded_parameter_runs_the_plain_net():
    rng = np.random.default_rng(7)
    params = _conv_bn_relu_params(rng)
    x = rng.standard_normal((1, 3, 6, 6)).astype(F32)
    fast, _, _ = _both(params, _conv_bn_relu(), ["x"], ["r"], {"x": x})
    assert _types(fast) == ["ConvRelu"]
    w2 = rng.standard_normal((4, 3, 3, 3)).astype(F32)
    plain = Predictor(_init(params), _net("net", _conv_bn_relu(), ["x", *params], ["r"]), optimize=False)
    np.testing.assert_array_equal(fast.run({"x": x, "w": w2})[0], plain.run({"x": x, "w": w2})[0])


def test_cuda_nets_are_left_alone():
    from nbcaffe.predictor import optimize

    net = _net("net", _conv_bn_relu(), ["x", "w"], ["r"])
    for op in net.op:
        op.device_option.device_type = 1
    out, used = optimize.optimize_for_inference(net, None, keep=["r"])
    assert out == net and not used


def _block_params(rng):
    return {"wa": rng.standard_normal((4, 3, 1, 1)).astype(F32), **_bn_params(rng, "bna", 4),
            "wb": rng.standard_normal((4, 3, 1, 1)).astype(F32), **_bn_params(rng, "bnb", 4)}


def _block(total="a_bn", out="a_bn"):
    """ResNet's first block of a stage: the branch conv, then the projection shortcut, then Sum
    in place on the branch and Relu in place."""
    return [core.CreateOperator("Conv", ["x", "wa"], ["a"], kernel=1), _bn("a", "bna", "a_bn"),
            core.CreateOperator("Conv", ["x", "wb"], ["b"], kernel=1), _bn("b", "bnb", "b_bn"),
            core.CreateOperator("Sum", ["a_bn", "b_bn"], [total]),
            core.CreateOperator("Relu", [total], [out])]


def test_residual_sum_and_relu_join_the_conv():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 5, 4)).astype(F32)
    fast, got, _ = _both(_block_params(rng), _block(), ["x"], ["a_bn"], {"x": x})
    assert _types(fast) == ["Conv", "ConvSumRelu"]  # the shortcut conv (BN folded), then the fused op
    assert fast.running_net.op[1].input[3] == "b_bn" and (got[0] == 0).any()
    fast, _, _ = _both(_block_params(rng), _block("s", "r"), ["x"], ["r"], {"x": x})
    assert _types(fast) == ["Conv", "ConvSumRelu"]
    fast, _, _ = _both(_block_params(rng), _block("s", "r"), ["x"], ["r", "s"], {"x": x})  # the sum is asked for
    assert _types(fast) == ["Conv", "Conv", "Sum", "Relu"]
    # Relu onto a summand's name: never the fused op writing its own S; the other conv fuses
    fast, _, _ = _both(_block_params(rng), _block("s", "b_bn"), ["x"], ["b_bn"], {"x": x})
    assert _types(fast) == ["Conv", "ConvSumRelu"] and list(fast.running_net.op[1].input[::3]) == ["x", "a_bn"]


def test_conv_prelu_becomes_one_op():
    """MTCNN: Conv -> PRelu (per-channel slope, in place or not) -> ConvPRelu."""
    rng = np.random.default_rng(9)
    params = {"w": rng.standard_normal((4, 3, 3, 3)).astype(F32), "b": rng.standard_normal(4).astype(F32),
              "w2": rng.standard_normal((2, 4, 1, 1)).astype(F32), "a": rng.uniform(0.1, 0.3, 4).astype(F32),
              "a2": np.array([0.2], F32)}
    ops = [core.CreateOperator("Conv", ["x", "w", "b"], ["c"], kernel=3),
           core.CreateOperator("PRelu", ["c", "a"], ["c"]),
           core.CreateOperator("Conv", ["c", "w2"], ["d"], kernel=1),  # no bias: a zero bias is added
           core.CreateOperator("PRelu", ["d", "a2"], ["e"])]
    fast, _, _ = _both(params, ops, ["x"], ["e"], {"x": rng.standard_normal((2, 3, 7, 6)).astype(F32)})
    assert _types(fast) == ["ConvPRelu", "ConvPRelu"]
    assert list(fast.running_net.op[0].input) == ["x", "w", "b", "a"]
