"""brew builders and their CNNModelHelper spellings.

Structural checks (op types, inputs/outputs, arguments, parameter names, shapes, init ops,
tags, storage order, arg scopes) need no kernels; the numeric end-to-end checks at the end run
small nets built with brew against PyTorch.
"""

from __future__ import annotations

import doctest
import inspect
import logging

import numpy as np
import pytest

from nbcaffe import brew, cnn, core, errors, model_helper, workspace
from nbcaffe.devices import CUDA, DeviceOption
from nbcaffe.modeling import initializers


def arg(op, name):
    found = [a for a in op.arg if a.name == name]
    if not found:
        return None
    a = found[0]
    for field in ("i", "f", "s"):
        if a.HasField(field):
            value = getattr(a, field)
            return value.decode() if isinstance(value, bytes) else value
    return list(a.ints) or list(a.floats) or [s.decode() for s in a.strings]


def ops(net):
    return list(net.Proto().op)


def init_ops(model):
    return {op.output[0]: op for op in model.param_init_net.Proto().op}


def shape_of(model, name):
    return model.get_param_info(name).shape


# ----------------------------------------------------------------------------- conv family

@pytest.mark.parametrize("order,expected", [("NCHW", [16, 3, 5, 5]), ("NHWC", [16, 5, 5, 3])])
def test_conv_filter_shape_follows_the_order(order, expected):
    m = model_helper.ModelHelper(name="c", arg_scope={"order": order})
    y = brew.conv(m, "data", "conv1", dim_in=3, dim_out=16, kernel=5, stride=1, pad=2)
    assert str(y) == "conv1"
    (op,) = ops(m.net)
    assert op.type == "Conv" and list(op.input) == ["data", "conv1_w", "conv1_b"] and list(op.output) == ["conv1"]
    assert arg(op, "kernel") == 5 and arg(op, "order") == order and arg(op, "pad") == 2 and arg(op, "stride") == 1
    assert op.engine == "CUDNN" and arg(op, "exhaustive_search") == 0  # ModelHelper's default use_cudnn=True
    assert shape_of(m, "conv1_w") == expected and shape_of(m, "conv1_b") == [16]
    inits = init_ops(m)
    assert inits["conv1_w"].type == "XavierFill" and arg(inits["conv1_w"], "shape") == expected
    assert inits["conv1_b"].type == "ConstantFill" and arg(inits["conv1_b"], "shape") == [16]
    assert [str(p) for p in m.weights] == ["conv1_w"] and [str(p) for p in m.biases] == ["conv1_b"]


def test_conv_groups_no_bias_rectangular_kernel_and_initializers():
    m = model_helper.ModelHelper(name="c2", arg_scope={"use_cudnn": False})
    brew.conv(m, "x", "g", dim_in=8, dim_out=4, kernel=(3, 1), group=2, no_bias=True,
              weight_init=("MSRAFill", {}))
    brew.conv(m, "x", "h", 8, 6, 3, WeightInitializer=initializers.Initializer("GaussianFill", std=0.01),
              bias_init=("ConstantFill", {"value": 0.5}))
    g, h = ops(m.net)
    assert list(g.input) == ["x", "g_w"] and arg(g, "group") == 2 and arg(g, "kernels") == [3, 1]
    assert arg(g, "kernel") is None and arg(g, "no_bias") is None and g.engine == ""
    assert shape_of(m, "g_w") == [4, 4, 3, 1]
    inits = init_ops(m)
    assert inits["g_w"].type == "MSRAFill" and "g_b" not in inits
    assert inits["h_w"].type == "GaussianFill" and arg(inits["h_w"], "std") == pytest.approx(0.01)
    assert arg(inits["h_b"], "value") == 0.5 and arg(h, "group") is None
    with pytest.raises(errors.ArgumentError, match="divisible by group=3"):
        brew.conv(m, "x", "bad", 8, 6, 3, group=3)


def test_conv_transform_inputs_and_cudnn_hints():
    m = cnn.CNNModelHelper(name="c3", cudnn_exhaustive_search=True, ws_nbytes_limit=1 << 20)

    def swap_in_quantized(model, blob_out, inputs):
        inputs[1] = model.net.Copy(inputs[1], str(blob_out) + "_w_copy")

    m.Conv("x", "q", 2, 2, 1, transform_inputs=swap_in_quantized)
    copy, conv = ops(m.net)
    assert copy.type == "Copy" and list(conv.input) == ["x", "q_w_copy", "q_b"]
    assert conv.engine == "CUDNN" and arg(conv, "exhaustive_search") == 1 and arg(conv, "ws_nbytes_limit") == 1 << 20


def test_conv_nd_and_conv_transpose_shapes():
    m = model_helper.ModelHelper(name="nd")
    brew.conv_nd(m, "vol", "c3d", 2, 4, [3, 2, 1], strides=[1, 1, 1])
    (op,) = ops(m.net)
    assert arg(op, "kernels") == [3, 2, 1] and shape_of(m, "c3d_w") == [4, 2, 3, 2, 1]
    with pytest.raises(errors.ArgumentError, match="NCHW"):
        brew.conv_nd(model_helper.ModelHelper(name="x", arg_scope={"order": "NHWC"}), "v", "c", 1, 1, [3])
    for order, expected in (("NCHW", [6, 3, 4, 4]), ("NHWC", [6, 4, 4, 3])):
        m = model_helper.ModelHelper(name="t" + order, arg_scope={"order": order})
        brew.conv_transpose(m, "x", "up", dim_in=6, dim_out=3, kernel=4, stride=2, adj=1)
        (op,) = ops(m.net)
        assert op.type == "ConvTranspose" and list(op.input) == ["x", "up_w", "up_b"]
        assert arg(op, "kernel") == 4 and arg(op, "adj") == 1 and arg(op, "order") == order
        assert shape_of(m, "up_w") == expected and shape_of(m, "up_b") == [3]


def test_group_conv_and_the_deprecated_split_concat_form():
    m = model_helper.ModelHelper(name="gc", arg_scope={"use_cudnn": False})
    brew.group_conv(m, "x", "g", 6, 4, 3, group=2)
    assert arg(ops(m.net)[0], "group") == 2 and shape_of(m, "g_w") == [4, 3, 3, 3]
    m = cnn.CNNModelHelper(order="NHWC", name="gcd", use_cudnn=False)
    out = m.GroupConv_Deprecated("x", "d", 6, 4, 3, group=2)
    split, c0, c1, cat = ops(m.net)
    assert split.type == "DepthSplit" and list(split.output) == ["_d_gconv_split_0", "_d_gconv_split_1"]
    assert arg(split, "split") == [3, 3] and arg(split, "order") == "NHWC"
    assert list(c0.input) == ["_d_gconv_split_0", "d_gconv_0_w", "d_gconv_0_b"] and list(c1.output) == ["d_gconv_1"]
    assert shape_of(m, "d_gconv_1_w") == [2, 3, 3, 3]
    assert cat.type == "Concat" and list(cat.output) == ["d", "_d_concat_dims"] and str(out) == "d"


# ----------------------------------------------------------------------------- parameter-free layers

def test_pooling_ops():
    m = model_helper.ModelHelper(name="p", arg_scope={"order": "NHWC", "use_cudnn": False})
    brew.max_pool(m, "x", "mp", kernel=2, stride=2)
    brew.average_pool(m, "x", "ap", global_pooling=1, use_cudnn=True)
    idx = brew.max_pool_with_index(m, "x", "mpi", kernel=3)
    mp, ap, mpi = ops(m.net)
    assert (mp.type, arg(mp, "kernel"), arg(mp, "stride"), arg(mp, "order"), mp.engine) == ("MaxPool", 2, 2, "NHWC", "")
    assert (ap.type, arg(ap, "global_pooling"), ap.engine) == ("AveragePool", 1, "CUDNN")
    assert mpi.type == "MaxPoolWithIndex" and list(mpi.output) == ["mpi", "mpi_index"] and str(idx) == "mpi"
    assert not m.params and not ops(m.param_init_net)


def test_dropout_requires_is_test_and_names_its_mask():
    m = model_helper.ModelHelper(name="d")
    with pytest.raises(errors.ArgumentError, match="'is_test' is required"):
        brew.dropout(m, "x", "y", ratio=0.5)
    y = brew.dropout(m, "x", "y", ratio=0.3, is_test=0)
    z = brew.dropout(m, "y", "z", is_test=1, use_cudnn=False)
    a, b = ops(m.net)
    assert list(a.output) == ["y", "_y_mask"] and str(y) == "y" and a.engine == "CUDNN"
    assert arg(a, "ratio") == pytest.approx(0.3) and arg(a, "is_test") == 0
    assert b.engine == "DEFAULT" and arg(b, "is_test") == 1 and str(z) == "z"


def test_concat_and_depth_concat(caplog):
    m = model_helper.ModelHelper(name="cat")
    brew.concat(m, ["a", "b"], "ab")
    brew.concat(m, ["a", "b"], "ab0", axis=0)  # axis=0 also drops the scope's order
    with caplog.at_level(logging.WARNING, logger="nbcaffe"):
        brew.depth_concat(m, ["a", "b"], "dc", order="NHWC")
    assert "DepthConcat is deprecated" in caplog.text
    c1, c2, c3 = ops(m.net)
    assert list(c1.output) == ["ab", "_ab_concat_dims"] and arg(c1, "order") == "NCHW" and arg(c1, "axis") is None
    assert arg(c2, "axis") == 0 and arg(c2, "order") is None
    assert c3.type == "Concat" and arg(c3, "order") == "NHWC"


def test_sum_transpose_batch_mat_mul():
    m = model_helper.ModelHelper(name="alg")
    brew.sum(m, ["a", "b", "c"], "s")
    brew.transpose(m, "s", "t", axes=[1, 0], use_cudnn=False)
    brew.batch_mat_mul(m, ["a", "b"], "mm", trans_b=1, enable_tensor_core=True)
    s, t, mm = ops(m.net)
    assert (s.type, list(s.input), list(s.output)) == ("Sum", ["a", "b", "c"], ["s"])
    assert t.type == "Transpose" and arg(t, "axes") == [1, 0] and t.engine == ""
    assert mm.type == "BatchMatMul" and arg(mm, "trans_b") == 1 and mm.engine == "TENSORCORE"


def test_lrn_has_a_scale_output_on_the_cpu_only():
    m = model_helper.ModelHelper(name="lrn")
    y = brew.lrn(m, "x", "n1", size=5, alpha=1e-4, beta=0.75, bias=2.0)
    with core.DeviceScope(DeviceOption(CUDA, 0)):
        brew.lrn(m, "x", "n2", size=3)
    cpu, gpu = ops(m.net)
    assert list(cpu.output) == ["n1", "_n1_scale"] and str(y) == "n1" and cpu.engine == ""
    assert arg(cpu, "size") == 5 and arg(cpu, "beta") == pytest.approx(0.75) and arg(cpu, "bias") == 2.0
    assert list(gpu.output) == ["n2"] and gpu.engine == "CUDNN"


def test_pad_image_and_image_input():
    m = model_helper.ModelHelper(name="img")
    brew.pad_image(m, "x", "xp", pads=[1, 2, 1, 2], mode="reflect")
    with pytest.raises(errors.ArgumentError, match="'is_test' is required"):
        brew.image_input(m, "reader", ["data", "label"], batch_size=4, scale=8, crop=6)
    data, label = brew.image_input(m, "reader", ["data", "label"], batch_size=4, scale=8, crop=6, is_test=0,
                                   mean=128.0)
    pad, img, to_nchw = ops(m.net)
    assert pad.type == "PadImage" and arg(pad, "pads") == [1, 2, 1, 2] and arg(pad, "mode") == "reflect"
    assert arg(pad, "use_cudnn") is None and arg(pad, "order") == "NCHW"
    assert img.type == "ImageInput" and list(img.input) == ["reader"] and list(img.output) == ["data_nhwc", "label"]
    assert arg(img, "batch_size") == 4 and arg(img, "crop") == 6 and arg(img, "is_test") == 0
    assert to_nchw.type == "NHWC2NCHW" and list(to_nchw.output) == ["data"] and (str(data), str(label)) == \
        ("data", "label")
    m2 = cnn.CNNModelHelper(order="NHWC", name="img2")
    m2.ImageInput([], ["d", "l"], batch_size=1, scale=4, crop=4, is_test=1, db="x.minidb")
    (op,) = ops(m2.net)
    assert list(op.input) == [] and list(op.output) == ["d", "l"] and arg(op, "db") == "x.minidb"


def test_db_input_and_model_tensor_protos_db_input():
    m = model_helper.ModelHelper(name="dbi")
    data, label = m.TensorProtosDBInput([], ["data", "label"], batch_size=16, db="/d/train.lmdb", db_type="lmdb")
    (create,) = ops(m.param_init_net)
    (read,) = ops(m.net)
    assert create.type == "CreateDB" and list(create.output) == ["dbreader_/d/train.lmdb"]
    assert arg(create, "db") == "/d/train.lmdb" and arg(create, "db_type") == "lmdb"
    assert read.type == "TensorProtosDBInput" and list(read.input) == ["dbreader_/d/train.lmdb"]
    assert list(read.output) == ["data", "label"] and arg(read, "batch_size") == 16
    with pytest.raises(errors.ArgumentError, match="must be \\[\\]"):
        m.TensorProtosDBInput(["reader"], ["d"], batch_size=1, db="x")
    reader = m.CreateDB("my_reader", db="x.minidb")
    assert str(reader) == "my_reader" and ops(m.param_init_net)[-1].type == "CreateDB"


# ----------------------------------------------------------------------------- parameterised layers

def test_spatial_bn_parameters_tags_and_outputs():
    m = model_helper.ModelHelper(name="bn", arg_scope={"order": "NHWC"})
    y = brew.spatial_bn(m, "x", "bn", 8, epsilon=1e-3, momentum=0.9, is_test=0)
    (op,) = ops(m.net)
    assert list(op.input) == ["x", "bn_s", "bn_b", "bn_rm", "bn_riv"]
    assert list(op.output) == ["bn", "bn_rm", "bn_riv", "bn_sm", "bn_siv"] and str(y) == "bn"
    assert arg(op, "order") == "NHWC" and arg(op, "epsilon") == pytest.approx(1e-3)
    inits = init_ops(m)
    assert [(k, inits[k].type, arg(inits[k], "value"), arg(inits[k], "shape")) for k in ("bn_s", "bn_b", "bn_rm",
            "bn_riv")] == [("bn_s", "ConstantFill", 1.0, [8]), ("bn_b", "ConstantFill", 0.0, [8]),
                           ("bn_rm", "ConstantFill", 0.0, [8]), ("bn_riv", "ConstantFill", 1.0, [8])]
    assert [str(p) for p in m.params] == ["bn_s", "bn_b"]
    assert [str(p) for p in m.GetComputedParams()] == ["bn_rm", "bn_riv"]
    assert [str(w) for w in m.weights] == ["bn_s"] and [str(b) for b in m.biases] == ["bn_b"]
    brew.spatial_bn(m, "x", "bn_test", 8, is_test=1, init_scale=0.5)
    assert list(ops(m.net)[1].output) == ["bn_test"] and arg(init_ops(m)["bn_test_s"], "value") == 0.5
    # a deploy model shares the training model's parameters: no init ops, same names and tags
    deploy = model_helper.ModelHelper(name="bn_deploy", init_params=False)
    brew.spatial_bn(deploy, "x", "bn", 8, is_test=1)
    assert not ops(deploy.param_init_net) and [str(p) for p in deploy.GetComputedParams()] == ["bn_rm", "bn_riv"]
    # an initializer class is configured by the default tuple, as in Caffe2
    m2 = model_helper.ModelHelper(name="bn2")
    brew.spatial_bn(m2, "x", "b2", 4, is_test=1, ScaleInitializer=initializers.PseudoFP16Initializer)
    assert init_ops(m2)["b2_s"].type == "ConstantFill"


def test_instance_norm_layer_norm_elementwise_linear_prelu():
    m = model_helper.ModelHelper(name="norms")
    brew.instance_norm(m, "x", "in1", 3, epsilon=1e-5)
    brew.instance_norm(m, "x", "in2", 3, is_test=1)
    out, mean, std = brew.layer_norm(m, "h", "ln", 6, axis=1, epsilon=1e-5, initial_scale=2.0)
    brew.elementwise_linear(m, "h", "el", 6, axis=1)
    brew.prelu(m, "x", "pr", num_channels=3)
    in1, in2, ln, mul, add, el, pr = ops(m.net)
    assert list(in1.input) == ["x", "in1_s", "in1_b"] and list(in1.output) == ["in1", "in1_sm", "in1_siv"]
    assert list(in2.output) == ["in2"]
    assert (ln.type, list(ln.input), list(ln.output)) == ("LayerNorm", ["h"], ["ln", "ln_mean", "ln_stdev"])
    assert (mul.type, list(mul.input), list(mul.output), arg(mul, "broadcast"), arg(mul, "axis")) == \
        ("Mul", ["ln", "ln_scale"], ["ln_scaled"], 1, 1)
    assert (add.type, list(add.input), list(add.output)) == ("Add", ["ln_scaled", "ln_bias"], ["ln_biased"])
    assert (str(out), str(mean), str(std)) == ("ln_biased", "ln_mean", "ln_stdev")
    assert list(el.input) == ["h", "el_w", "el_b"] and arg(el, "axis") == 1
    assert list(pr.input) == ["x", "pr_slope"] and arg(pr, "order") == "NCHW"
    inits = init_ops(m)
    assert arg(inits["in1_s"], "value") == 1.0 and arg(inits["in1_b"], "value") == 0.0
    assert arg(inits["ln_scale"], "value") == 2.0 and arg(inits["ln_scale"], "shape") == [6]
    assert arg(inits["el_w"], "value") == 1.0 and arg(inits["el_b"], "value") == 0.0
    assert arg(inits["pr_slope"], "value") == 0.25 and arg(inits["pr_slope"], "shape") == [3]
    assert [str(w) for w in m.weights] == ["in1_s", "in2_s", "ln_scale", "el_w"]
    assert "pr_slope" in [str(p) for p in m.params] and "pr_slope" not in [str(w) for w in m.weights]


def test_name_scope_and_init_params_false():
    m = model_helper.ModelHelper(name="scoped")
    with core.NameScope("gpu_0"):
        brew.conv(m, "data", "conv1", 1, 2, 3)
        brew.spatial_bn(m, "conv1", "bn1", 2, is_test=0)
    conv, bn = ops(m.net)
    assert list(conv.input) == ["gpu_0/data", "gpu_0/conv1_w", "gpu_0/conv1_b"]
    assert list(bn.output) == ["gpu_0/bn1", "gpu_0/bn1_rm", "gpu_0/bn1_riv", "gpu_0/bn1_sm", "gpu_0/bn1_siv"]
    test = model_helper.ModelHelper(name="test_model", init_params=False)
    brew.conv(test, "data", "conv1", 1, 2, 3)
    brew.prelu(test, "conv1", "p", 2)
    brew.elementwise_linear(test, "p", "el", 2)
    assert not ops(test.param_init_net)
    assert [str(p) for p in test.params] == ["conv1_w", "conv1_b", "p_slope", "el_w", "el_b"]


def test_arg_scopes_reach_the_builders():
    m = model_helper.ModelHelper(name="scopes", arg_scope={"order": "NHWC", "use_cudnn": False})
    with brew.arg_scope([brew.conv], pad=1, stride=2):
        with brew.arg_scope([brew.conv, brew.max_pool], stride=3):
            brew.conv(m, "x", "c1", 3, 4, 3)
            brew.max_pool(m, "c1", "p1", kernel=2)
        brew.conv(m, "x", "c2", 3, 4, 3, pad=0)
    c1, p1, c2 = ops(m.net)
    assert (arg(c1, "pad"), arg(c1, "stride"), arg(c1, "order")) == (1, 3, "NHWC")
    assert arg(p1, "stride") == 3 and (arg(c2, "pad"), arg(c2, "stride")) == (0, 2)
    assert shape_of(m, "c1_w") == [4, 3, 3, 3]


def test_cnn_model_helper_spells_the_same_builders():
    m = cnn.CNNModelHelper(order="NHWC", name="cnn", use_cudnn=False)
    m.Conv("data", "conv1", 3, 8, 5)
    m.MaxPool("conv1", "pool1", kernel=2, stride=2)
    m.SpatialBN("pool1", "bn1", 8, is_test=1)
    m.Dropout("bn1", "drop1", is_test=1)
    m.LRN("drop1", "lrn1", size=3)
    m.Concat(["lrn1", "pool1"], "cat")
    m.PRelu("cat", "pr", 16)
    m.PadImage("pr", "pad", pad=1)
    types = [op.type for op in ops(m.net)]
    assert types == ["Conv", "MaxPool", "SpatialBN", "Dropout", "LRN", "Concat", "PRelu", "PadImage"]
    assert shape_of(m, "conv1_w") == [8, 5, 5, 3]
    for op in ops(m.net):
        assert arg(op, "order") == "NHWC", op.type  # the model's order reaches every op (Dropout ignores it)


# ----------------------------------------------------------------------------- documentation

NEW_HELPERS = ["conv", "conv_nd", "conv_transpose", "group_conv", "group_conv_deprecated", "max_pool", "average_pool",
               "max_pool_with_index", "lrn", "spatial_bn", "instance_norm", "layer_norm", "dropout", "concat",
               "depth_concat", "sum", "transpose", "batch_mat_mul", "elementwise_linear", "prelu", "db_input",
               "image_input", "pad_image"]


@pytest.mark.parametrize("name", NEW_HELPERS)
def test_helpers_have_runnable_documentation(name):
    helper = getattr(brew, name)
    assert brew.has_helper(name) and helper.__name__ == name
    doc = inspect.getdoc(helper)
    for section in ("Args:", "Returns:", "Example:"):
        assert section in doc, f"brew.{name} docstring lacks {section}"
    raw = inspect.unwrap(helper)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(raw, name, globs=dict(vars(inspect.getmodule(raw))))
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    assert runner.failures == 0


# ----------------------------------------------------------------------------- numbers (need the ops)

torch = pytest.importorskip("torch")


def fetch(name):
    return workspace.FetchBlob(name)


def test_conv_net_nchw_matches_torch():
    m = model_helper.ModelHelper(name="convnet")
    brew.conv(m, "data", "conv1", 3, 4, 3, pad=1)
    brew.relu(m, "conv1", "relu1")
    brew.max_pool(m, "relu1", "pool1", kernel=2, stride=2)
    brew.conv(m, "pool1", "conv2", 4, 6, (3, 1), group=2, stride=1)
    brew.average_pool(m, "conv2", "pool2", global_pooling=1)
    brew.fc(m, "pool2", "fc", 6, 5)
    brew.softmax(m, "fc", "prob")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    workspace.FeedBlob("data", x)
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    t = {k: torch.from_numpy(fetch(k)) for k in ("conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc_w", "fc_b")}
    h = torch.nn.functional.conv2d(torch.from_numpy(x), t["conv1_w"], t["conv1_b"], padding=1)
    h = torch.nn.functional.max_pool2d(torch.relu(h), 2, 2)
    h = torch.nn.functional.conv2d(h, t["conv2_w"], t["conv2_b"], groups=2)
    h = h.mean(dim=(2, 3))
    prob = torch.softmax(h @ t["fc_w"].T + t["fc_b"], dim=1)
    np.testing.assert_allclose(fetch("prob"), prob.numpy(), rtol=1e-4, atol=1e-6)


def test_conv_nhwc_filters_match_nchw():
    x = np.random.default_rng(1).standard_normal((2, 5, 6, 3)).astype(np.float32)
    m = model_helper.ModelHelper(name="nhwc", arg_scope={"order": "NHWC"})
    brew.conv(m, "x", "c", 3, 4, 3, stride=2)
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    w = fetch("c_w")  # (M, kh, kw, C)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2),
                                          torch.from_numpy(w).permute(0, 3, 1, 2), torch.from_numpy(fetch("c_b")),
                                          stride=2).permute(0, 2, 3, 1)
    np.testing.assert_allclose(fetch("c"), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_normalization_builders_match_torch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    h = rng.standard_normal((4, 6)).astype(np.float32)
    m = model_helper.ModelHelper(name="norm")
    brew.spatial_bn(m, "x", "bn", 3, epsilon=1e-5, momentum=0.9, is_test=0, init_scale=1.5, init_bias=0.25)
    brew.instance_norm(m, "x", "inorm", 3, epsilon=1e-5)
    brew.layer_norm(m, "h", "ln", 6, epsilon=1e-5, initial_scale=2.0, initial_bias=-1.0)
    brew.lrn(m, "x", "lrn", size=3, alpha=1e-2, beta=0.75, bias=1.0)
    workspace.FeedBlob("x", x)
    workspace.FeedBlob("h", h)
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    tx = torch.from_numpy(x)
    rm, rv = torch.zeros(3), torch.ones(3)
    bn = torch.nn.functional.batch_norm(tx, rm, rv, torch.full((3,), 1.5), torch.full((3,), 0.25), training=True,
                                        momentum=0.1, eps=1e-5)
    np.testing.assert_allclose(fetch("bn"), bn.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fetch("bn_rm"), rm.numpy(), rtol=1e-4, atol=1e-6)
    # Caffe2 keeps the biased batch variance in the running average (torch: unbiased)
    var = x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1)
    np.testing.assert_allclose(fetch("bn_riv"), 0.9 * 1.0 + 0.1 * var, rtol=1e-4)
    np.testing.assert_allclose(fetch("inorm"), torch.nn.functional.instance_norm(tx, eps=1e-5).numpy(), rtol=1e-4,
                               atol=1e-5)
    ln = torch.nn.functional.layer_norm(torch.from_numpy(h), (6,), torch.full((6,), 2.0), torch.full((6,), -1.0), 1e-5)
    np.testing.assert_allclose(fetch("ln_biased"), ln.numpy(), rtol=1e-4, atol=1e-5)
    lrn = torch.nn.functional.local_response_norm(tx, 3, alpha=1e-2, beta=0.75, k=1.0)
    np.testing.assert_allclose(fetch("lrn"), lrn.numpy(), rtol=1e-4, atol=1e-6)


def test_parameter_free_and_elementwise_builders_run():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 5, 4)).astype(np.float32)
    m = model_helper.ModelHelper(name="misc")
    brew.dropout(m, "x", "xd", ratio=0.5, is_test=1)
    brew.concat(m, ["x", "xd"], "cat")
    brew.transpose(m, "cat", "t", axes=[0, 2, 3, 1])
    brew.batch_mat_mul(m, ["a", "b"], "mm", trans_b=1)
    brew.prelu(m, "x", "pr", num_channels=3)
    brew.elementwise_linear(m, "mm", "el", 5, axis=2)
    brew.pad_image(m, "x", "pad", pad=1, mode="reflect")
    for name, value in (("x", x), ("a", a), ("b", b)):
        workspace.FeedBlob(name, value)
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    np.testing.assert_array_equal(fetch("xd"), x)
    np.testing.assert_array_equal(fetch("t"), np.concatenate([x, x], axis=1).transpose(0, 2, 3, 1))
    np.testing.assert_allclose(fetch("mm"), a @ b.transpose(0, 2, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fetch("pr"), np.where(x > 0, x, 0.25 * x), rtol=1e-6)
    np.testing.assert_allclose(fetch("el"), fetch("mm"), rtol=1e-6)  # w = 1, b = 0
    np.testing.assert_array_equal(fetch("pad"), np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))


def test_image_input_builder_produces_nchw(tmp_path):
    from nbcaffe import datasets

    imgs = np.random.default_rng(4).integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    datasets.write_tensor_protos_db(tmp_path / "img.minidb", [imgs, np.array([0, 1, 2])], db_type="minidb")
    m = model_helper.ModelHelper(name="imgnet")
    reader = m.CreateDB("reader", db=str(tmp_path / "img.minidb"))
    brew.image_input(m, reader, ["data", "label"], batch_size=3, scale=6, crop=4, is_test=1)
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    np.testing.assert_array_equal(fetch("data"), imgs[:, 1:5, 1:5].transpose(0, 3, 1, 2).astype(np.float32))
    np.testing.assert_array_equal(fetch("label"), [0, 1, 2])


def test_lenet_from_an_lmdb_trains(tmp_path):
    """The MNIST tutorial's input and LeNet built with brew: a few SGD steps lower the loss."""
    from nbcaffe import datasets, optimizer
    from tests._paths import shared_data

    images, labels = datasets.load_mnist(shared_data("mnist"))
    datasets.write_tensor_protos_db(tmp_path / "mnist.lmdb", [images[:256, None], labels[:256]])
    m = model_helper.ModelHelper(name="lenet")
    data_uint8, label = brew.db_input(m, ["data_uint8", "label"], batch_size=64, db=str(tmp_path / "mnist.lmdb"),
                                      db_type="lmdb")
    data = m.net.Cast(data_uint8, "data", to=core.DataType.FLOAT)
    data = m.net.Scale(data, data, scale=float(1.0 / 256))
    data = m.net.StopGradient(data, data)
    conv1 = brew.conv(m, data, "conv1", dim_in=1, dim_out=20, kernel=5)
    pool1 = brew.max_pool(m, conv1, "pool1", kernel=2, stride=2)
    conv2 = brew.conv(m, pool1, "conv2", dim_in=20, dim_out=50, kernel=5)
    pool2 = brew.max_pool(m, conv2, "pool2", kernel=2, stride=2)
    fc3 = brew.relu(m, brew.fc(m, pool2, "fc3", dim_in=50 * 4 * 4, dim_out=500), "fc3")
    softmax = brew.softmax(m, brew.fc(m, fc3, "pred", 500, 10), "softmax")
    xent = m.net.LabelCrossEntropy([softmax, label], "xent")
    loss = m.net.AveragedLoss(xent, "loss")
    m.AddGradientOperators([loss])
    optimizer.build_sgd(m, base_learning_rate=0.1)
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    losses = []
    for _ in range(12):
        workspace.RunNet(m.net)
        losses.append(float(fetch("loss")))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses


def test_group_and_transposed_convolution_match_torch():
    x = np.random.default_rng(5).standard_normal((1, 4, 5, 5)).astype(np.float32)
    m = model_helper.ModelHelper(name="gct")
    brew.group_conv_deprecated(m, "x", "g", 4, 6, 3, group=2)
    brew.conv_transpose(m, "x", "up", 4, 2, 2, stride=2)
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    tx = torch.from_numpy(x)
    parts = [torch.nn.functional.conv2d(tx[:, 2 * i:2 * i + 2], torch.from_numpy(fetch(f"g_gconv_{i}_w")),
                                        torch.from_numpy(fetch(f"g_gconv_{i}_b"))) for i in range(2)]
    np.testing.assert_allclose(fetch("g"), torch.cat(parts, 1).numpy(), rtol=1e-4, atol=1e-5)
    up = torch.nn.functional.conv_transpose2d(tx, torch.from_numpy(fetch("up_w")), torch.from_numpy(fetch("up_b")),
                                              stride=2)
    np.testing.assert_allclose(fetch("up"), up.numpy(), rtol=1e-4, atol=1e-5)


def test_pooling_builders_match_torch():
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 6)).astype(np.float32)
    m = model_helper.ModelHelper(name="pools", arg_scope={"order": "NHWC"})
    brew.max_pool(m, "x_nhwc", "mp", kernel=3, stride=2, pad=1)
    brew.average_pool(m, "x_nhwc", "ap", kernel=2, stride=2)
    nchw = model_helper.ModelHelper(name="pools_nchw")
    brew.max_pool_with_index(nchw, "x", "mpi", kernel=2, stride=2)
    workspace.FeedBlob("x", x)
    workspace.FeedBlob("x_nhwc", np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    workspace.RunNetOnce(m.net)
    workspace.RunNetOnce(nchw.net)
    tx = torch.from_numpy(x)
    mp = torch.nn.functional.max_pool2d(tx, 3, 2, padding=1).permute(0, 2, 3, 1)
    ap = torch.nn.functional.avg_pool2d(tx, 2, 2).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(fetch("mp"), mp.numpy())
    np.testing.assert_allclose(fetch("ap"), ap.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(fetch("mpi"), torch.nn.functional.max_pool2d(tx, 2, 2).numpy())
