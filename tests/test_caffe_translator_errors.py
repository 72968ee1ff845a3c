"""Translator errors name the layer, its type and the shapes involved; malformed files are
reported by name; a translated net runs on CUDA like on the CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from nbcaffe import caffe_translator as ct
from nbcaffe import workspace
from nbcaffe.devices import CUDA, DeviceOption
from nbcaffe.proto import caffe_pb2
from tests.caffe_nets import F32, inputs_text, translate_run, weights_net

CONV = ('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param {'
        ' num_output: 4 kernel_size: 3 } }\n')


def expect(exc_type, *fragments, prototxt, weights=None, **kwargs):
    with pytest.raises(exc_type) as info:
        ct.TranslateModel(prototxt, weights, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in: {info.value}"
    return info.value


@pytest.mark.parametrize("layer_type", ["Threshold", "Python", "LSTM", "Convolution3D", "PriorBox"])
def test_unsupported_layer_names_the_layer_and_its_type(layer_type):
    text = inputs_text(data=(1, 2, 4, 4)) + f'layer {{ name: "odd" type: "{layer_type}" bottom: "data" top: "y" }}'
    err = expect(ct.UnsupportedLayerError, "layer 'odd'", f"type '{layer_type}'", "Supported types:", prototxt=text)
    assert isinstance(err, ct.CaffeTranslationError)


def test_unsupported_settings_name_the_layer():
    x = inputs_text(data=(2, 4))
    expect(ct.UnsupportedLayerError, "layer 'acc'", "ignore_label", prototxt=inputs_text(data=(2, 4), label=(2,)) +
           'layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "a" accuracy_param {'
           ' ignore_label: 0 } }')
    expect(ct.UnsupportedLayerError, "layer 'c'", "axis=2", prototxt=inputs_text(data=(1, 2, 4, 4)) +
           'layer { name: "c" type: "Convolution" bottom: "data" top: "y" convolution_param { num_output: 1'
           ' kernel_size: 1 axis: 2 } }', weights=weights_net(c=[np.zeros((1, 2, 1, 1), F32)]))
    expect(ct.CaffeTranslationError, "layer 'lrn'", "local_size 4 must be odd", prototxt=inputs_text(
        data=(1, 2, 4, 4)) + 'layer { name: "lrn" type: "LRN" bottom: "data" top: "y" lrn_param { local_size: 4 } }')
    expect(ct.CaffeTranslationError, "layer 'sl'", "2 slice points for 2 tops", prototxt=x +
           'layer { name: "sl" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { slice_point: 1'
           ' slice_point: 2 } }')


def test_weight_problems_name_the_layer_and_the_shapes():
    text = inputs_text(data=(1, 3, 8, 8)) + CONV
    expect(ct.CaffeTranslationError, "layer 'conv1' (type 'Convolution')", "needs 2 stored blob(s)", prototxt=text)
    expect(ct.CaffeTranslationError, "layer 'conv1'", "(4, 3, 5, 5)", "kernel [3, 3]", prototxt=text,
           weights=weights_net(conv1=[np.zeros((4, 3, 5, 5), F32), np.zeros(4, F32)]))
    expect(ct.CaffeTranslationError, "layer 'conv1'", "need 2 input channels", "(1, 3, 8, 8)", prototxt=text,
           weights=weights_net(conv1=[np.zeros((4, 2, 3, 3), F32), np.zeros(4, F32)]))
    ip = inputs_text(data=(2, 6)) + 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "y"' \
        ' inner_product_param { num_output: 3 } }'
    expect(ct.CaffeTranslationError, "layer 'fc'", "4 inputs per output", "(2, 6) has 6", prototxt=ip,
           weights=weights_net(fc=[np.zeros((3, 4), F32), np.zeros(3, F32)]))


def test_inconsistent_blob_in_caffemodel():
    model = weights_net(conv1=[np.zeros((4, 3, 3, 3), F32), np.zeros(4, F32)])
    del model.layer[0].blobs[0].data[5:]
    expect(ct.CaffeFormatError, "layer 'conv1'", "stored blob 0", "[4, 3, 3, 3] needs 108 values but it stores 5",
           prototxt=inputs_text(data=(1, 3, 8, 8)) + CONV, weights=model)


def test_malformed_files_are_reported_by_name(tmp_path):
    bad_text = tmp_path / "broken.prototxt"
    bad_text.write_text('name: "x"\nlayer { name: "a" type: "ReLU" bottom: "data"\n')
    expect(ct.CaffeFormatError, str(bad_text), "not a valid Caffe NetParameter", prototxt=str(bad_text))
    bad_model = tmp_path / "broken.caffemodel"
    bad_model.write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage")
    expect(ct.CaffeFormatError, str(bad_model), "not a binary Caffe NetParameter", prototxt=inputs_text(
        data=(1, 3, 8, 8)) + CONV, weights=str(bad_model))
    expect(ct.CaffeFormatError, "cannot read the caffemodel", prototxt=inputs_text(data=(1, 3, 8, 8)) + CONV,
           weights=str(tmp_path / "missing.caffemodel"))
    expect(ct.CaffeFormatError, "cannot read the prototxt", prototxt=str(tmp_path / "missing.prototxt"))
    binary = tmp_path / "model_as_prototxt"
    binary.write_bytes(bytes(range(256)))
    expect(ct.CaffeFormatError, "not a text prototxt", prototxt=str(binary))
    expect(ct.CaffeFormatError, "holds no layers", prototxt=inputs_text(data=(1, 1)), weights=b"\x0a\x01x")


def test_legacy_format_problems():
    v0 = 'layers { name: "old" layer { name: "old" type: "conv" } }'
    expect(ct.CaffeFormatError, "V0 layer", prototxt=v0)
    both = 'layer { name: "a" type: "Input" top: "x" }\nlayers { name: "b" type: RELU bottom: "x" top: "x" }'
    expect(ct.CaffeFormatError, "both current 'layer'", prototxt=both)
    expect(ct.CaffeFormatError, "4 input_dim values", prototxt='input: "data" input_dim: 1 input_dim: 2')


def test_fork_fields_are_skipped_with_a_warning(caplog):
    text = inputs_text(data=(1, 2, 4, 4)) + ('layer { name: "pb" type: "PriorBox" bottom: "data" top: "pb"'
                                             ' prior_box_param { min_size: 30 } }')
    with caplog.at_level(logging.WARNING, logger="nbcaffe.caffe_translator"):
        expect(ct.UnsupportedLayerError, "layer 'pb' of type 'PriorBox'", prototxt=text)
    assert "prior_box_param" in caplog.text


def test_input_dims_and_shape_needs():
    text = 'input: "data"\nlayer { name: "f" type: "Flatten" bottom: "data" top: "y" flatten_param { axis: 2 } }'
    expect(ct.CaffeTranslationError, "layer 'f'", "needs the shape of blob 'data'", "input_dims", prototxt=text)
    net, _ = ct.TranslateModel(text, None, input_dims=[2, 3, 4, 5])
    assert [op.type for op in net.op] == ["Reshape"]
    expect(ct.CaffeTranslationError, "not inputs of the Caffe net", prototxt=text, input_dims={"nope": [1]})
    expect(ct.CaffeTranslationError, "remove_legacy_pad needs the shape", prototxt=text, remove_legacy_pad=True)


def test_invalid_translated_op_names_layer_and_shapes():
    text = inputs_text(a=(2, 3), b=(2, 4)) + 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }'
    expect(ct.CaffeTranslationError, "layer 'sum' (type 'Eltwise')", "Sum op", "(2, 3)", "(2, 4)", prototxt=text)


def test_registering_a_custom_translator_with_the_caffe2_contract():
    @ct.TranslatorRegistry.Register("Double")
    def translate_double(layer, pretrained_blobs, is_test, **kwargs):
        op = caffe_pb2.LayerParameter()  # any object is fine to look at; build the op with make_op
        assert op is not None and "ctx" in kwargs and "net" in kwargs
        return ct.make_op("Scale", [layer.bottom[0]], [layer.top[0]], scale=2.0), []

    try:
        x = np.arange(6, dtype=F32).reshape(2, 3)
        out, _ = translate_run(inputs_text(data=(2, 3)) + 'layer { name: "d" type: "Double" bottom: "data" top: "y" }',
                               {"data": x})
        np.testing.assert_array_equal(out["y"], 2 * x)
    finally:
        del ct.TranslatorRegistry.registry_["Double"]


@pytest.mark.cuda
def test_translated_net_runs_on_cuda_like_on_cpu():
    from nbcaffe import dispatch

    if not dispatch.cuda_available():
        pytest.skip("CUDA kernels cannot run here")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 7)).astype(F32)
    text = (inputs_text(data=x.shape) +
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 3'
            ' kernel_size: 2 pad: 1 } }\n'
            'layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: AVE kernel_size: 3'
            ' stride: 2 pad: 1 } }\n'
            'layer { name: "n" type: "LRN" bottom: "p" top: "n" lrn_param { local_size: 3 alpha: 0.5'
            ' norm_region: WITHIN_CHANNEL } }\n'
            'layer { name: "m" type: "MVN" bottom: "n" top: "m" }\n'
            'layer { name: "s" type: "Softmax" bottom: "m" top: "s" }\n')
    weights = weights_net(c=[rng.standard_normal((3, 2, 2, 2)).astype(F32), rng.standard_normal(3).astype(F32)])
    cpu, _ = translate_run(text, {"data": x}, weights, fetch=["s"])
    init_net, predict_net = ct.TranslatePretrainedModel(text, weights)
    for net in (init_net, predict_net):
        net.device_option.CopyFrom(DeviceOption(CUDA, 0))
    with workspace.temp_workspace("_caffe_translator_cuda_"):
        workspace.RunNetOnce(init_net)
        workspace.FeedBlob("data", x, DeviceOption(CUDA, 0))
        workspace.RunNetOnce(predict_net)
        got = workspace.FetchBlob("s")
    np.testing.assert_allclose(got, cpu["s"], rtol=1e-5, atol=1e-6)
