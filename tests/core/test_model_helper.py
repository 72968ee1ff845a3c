"""ModelHelper, brew and CNNModelHelper: one set of helpers behind both spellings."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from nbcaffe import brew, cnn, core, model_helper, workspace
from nbcaffe.modeling import initializers


def arg(op, name):
    return next(a for a in op.arg if a.name == name)


def test_fc_creates_params_in_init_net_and_runs():
    m = model_helper.ModelHelper(name="mh")
    y = brew.fc(m, "x", "fc", dim_in=4, dim_out=3)
    assert [str(p) for p in m.params] == ["fc_w", "fc_b"] and [str(w) for w in m.weights] == ["fc_w"]
    assert [op.type for op in m.param_init_net.Proto().op] == ["XavierFill", "ConstantFill"]
    assert list(arg(m.param_init_net.Proto().op[0], "shape").ints) == [3, 4]
    workspace.FeedBlob("x", np.ones((2, 4), np.float32))
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    w, b = workspace.FetchBlob("fc_w"), workspace.FetchBlob("fc_b")
    np.testing.assert_allclose(workspace.FetchBlob(y), np.ones((2, 4)) @ w.T + b, rtol=1e-6)


def test_initializer_spellings():
    m = model_helper.ModelHelper(name="inits")
    brew.fc(m, "x", "a", 2, 3, weight_init=("GaussianFill", {"std": 0.5}), bias_init=("ConstantFill", {"value": 1.0}))
    brew.fc(m, "x", "b", 2, 3, WeightInitializer=initializers.Initializer("MSRAFill"))
    ops = m.param_init_net.Proto().op
    assert [op.type for op in ops] == ["GaussianFill", "ConstantFill", "MSRAFill", "ConstantFill"]
    assert arg(ops[0], "std").f == 0.5 and arg(ops[1], "value").f == 1.0


def test_init_params_false_and_param_model_share_parameters():
    train = model_helper.ModelHelper(name="train")
    brew.fc(train, "x", "fc", 4, 2)
    test = model_helper.ModelHelper(name="test", init_params=False)
    brew.fc(test, "x", "fc", 4, 2)
    assert len(test.param_init_net.Proto().op) == 0 and [str(p) for p in test.params] == ["fc_w", "fc_b"]
    shared = model_helper.ModelHelper(name="shared", param_model=train)
    assert shared.param_init_net is train.param_init_net and shared.params is train.params
    with pytest.raises(Exception, match="already exists with shape"):
        brew.fc(train, "x", "fc", 5, 2)


def test_name_scope_prefixes_parameters_and_get_params():
    m = model_helper.ModelHelper(name="scoped")
    with core.NameScope("gpu_0"):
        brew.fc(m, "x", "fc", 2, 2)
        assert [str(p) for p in m.GetParams()] == ["gpu_0/fc_w", "gpu_0/fc_b"]
    brew.fc(m, "x", "other", 2, 2)
    assert [str(p) for p in m.GetParams("gpu_0")] == ["gpu_0/fc_w", "gpu_0/fc_b"]
    assert len(m.GetParams()) == 4


def test_arg_scope_and_model_arg_scope():
    m = model_helper.ModelHelper(name="scopes", arg_scope={"order": "NHWC"})
    with brew.arg_scope([brew.fc], axis=2):
        brew.fc(m, "x", "a", 2, 2)
        with brew.arg_scope(brew.fc, axis=3):
            brew.fc(m, "x", "b", 2, 2)
        brew.fc(m, "x", "c", 2, 2, axis=1)  # explicit wins
    ops = m.net.Proto().op
    assert [arg(op, "axis").i for op in ops] == [2, 3, 1]
    assert arg(ops[0], "order").s == b"NHWC"  # fc takes **kwargs, so model.arg_scope reaches the op
    with pytest.raises(RuntimeError, match="first input of helper function should be model"):
        brew.fc()


def test_brew_register_and_help():
    def my_helper(model, blob_in, blob_out, factor=1.0):
        """Scale by factor."""
        return model.net.Scale(blob_in, blob_out, scale=factor)

    brew.Register(my_helper)
    assert brew.has_helper("my_helper") and brew.has_helper(brew.my_helper)
    m = model_helper.ModelHelper(name="custom")
    brew.my_helper(m, "x", "y", factor=2.0)  # order/use_cudnn from arg_scope are filtered: no **kwargs
    assert [a.name for a in m.net.Proto().op[0].arg] == ["scale"]
    with pytest.raises(AttributeError, match="already exists"):
        brew.Register(my_helper)
    assert "Add ``FC" in brew.fc.__doc__ and brew.fc.__name__ == "fc"
    del brew._HELPERS["my_helper"]


def test_cnn_model_helper_methods_and_fallthrough(caplog):
    m = cnn.CNNModelHelper(order="NCHW", name="cnn_m")
    fc = m.FC("data", "fc1", dim_in=3, dim_out=2)
    relu = m.Relu(fc, "r")
    m.Sigmoid(relu, "s")  # not a helper: falls through to the net
    sm = m.Softmax("s", "p")
    with caplog.at_level(logging.WARNING, logger="nbcaffe"):
        m.Negative("p", "q")  # an op outside the known list is allowed but logged once
        m.Negative("q", "q2")
    assert [op.type for op in m.net.Proto().op] == ["FC", "Relu", "Sigmoid", "Softmax", "Negative", "Negative"]
    assert caplog.text.count("does not recognize: Negative") == 1
    assert m.net.Proto().op[1].engine == "CUDNN"  # use_cudnn=True, as Caffe2's helpers set it
    assert str(sm) == "p" and m.arg_scope["order"] == "NCHW"
    with pytest.raises(ValueError, match="storage order"):
        cnn.CNNModelHelper(order="NWHC")
    with pytest.raises(AttributeError, match="not a registered operator"):
        m.NoSuchOp("x")
    strict = model_helper.ModelHelper(name="strict", allow_not_known_ops=False)
    with pytest.raises(AttributeError, match="not known to be safe"):
        strict.Negative("x", "y")
