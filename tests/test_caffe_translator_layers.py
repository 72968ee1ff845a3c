"""Each Caffe layer translator on a hand-built prototxt against NumPy written from Caffe's
definition of the layer (tests/caffe_nets.py), plus the forms the translation takes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.caffe_nets import (
    F32,
    caffe_pool_ref,
    conv_ref,
    deconv_ref,
    inputs_text,
    lrn_across_ref,
    lrn_within_ref,
    op_types,
    softmax_ref,
    translate_run,
    weights_net,
)

RNG = np.random.default_rng(2024)


def normal(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(F32)


def close(got, want, rtol=1e-5, atol=1e-5):
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def one_layer(layer_text, x, weights=None, shape=None, fetch=("y",), **kwargs):
    """Translate `Input data` + one layer (top y) and run it on x."""
    text = inputs_text(data=shape or x.shape) + layer_text
    out, net = translate_run(text, {"data": x}, weights, fetch=fetch, **kwargs)
    return out[fetch[0]], net


# ------------------------------------------------------------------------------- convolution

@pytest.mark.parametrize("spec,stride,pad,dilation,group,bias", [
    ("kernel_size: 3", (1, 1), (0, 0), (1, 1), 1, True),
    ("kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0", (2, 1), (1, 0), (1, 1), 1, True),
    ("kernel_size: 3 pad: 2 dilation: 2 group: 2", (1, 1), (2, 2), (2, 2), 2, True),
    ("kernel_size: 3 stride: 2 bias_term: false", (2, 2), (0, 0), (1, 1), 1, False),
    ("kernel_size: 3 kernel_size: 2 stride: 1 stride: 2 pad: 1 pad: 0", (1, 2), (1, 0), (1, 1), 1, True),
])
def test_convolution(spec, stride, pad, dilation, group, bias):
    x = normal(2, 4, 7, 8)
    kh = 3
    kw = 2 if "kernel_w: 2" in spec or "kernel_size: 2" in spec else 3
    w, b = normal(6, 4 // group, kh, kw), normal(6)
    blobs = [w, b] if bias else [w]
    y, net = one_layer(f'layer {{ name: "c" type: "Convolution" bottom: "data" top: "y" convolution_param {{'
                       f' num_output: 6 {spec} }} }}', x, weights_net(c=blobs))
    close(y, conv_ref(x, w, b if bias else None, stride, pad, dilation, group), rtol=1e-4, atol=1e-5)
    assert op_types(net) == ["Conv"]


def test_convolution_3d():
    x, w, b = normal(1, 2, 5, 6, 7), normal(3, 2, 3, 2, 3), normal(3)
    y, net = one_layer('layer { name: "c" type: "Convolution" bottom: "data" top: "y" convolution_param {'
                       ' num_output: 3 kernel_size: 3 kernel_size: 2 kernel_size: 3 pad: 1 stride: 2 } }', x,
                       weights_net(c=[w, b]))
    close(y, conv_ref(x, w, b, (2, 2, 2), (1, 1, 1)), rtol=1e-4, atol=1e-5)
    assert [a.name for a in net.op[0].arg] == ["kernels", "strides", "pads"]


@pytest.mark.parametrize("group,stride,pad", [(1, (2, 2), (1, 1)), (3, (2, 3), (0, 1))])
def test_deconvolution(group, stride, pad):
    x, w, b = normal(2, 6, 4, 5), normal(6, 2, 3, 4), normal(2 * group)
    y, _ = one_layer(f'layer {{ name: "d" type: "Deconvolution" bottom: "data" top: "y" convolution_param {{'
                     f' num_output: {2 * group} group: {group} kernel_h: 3 kernel_w: 4 stride_h: {stride[0]}'
                     f' stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} }} }}', x, weights_net(d=[w, b]))
    close(y, deconv_ref(x, w, b, stride, pad, group), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- pooling

POOL_CASES = [  # (pool, kernel, stride, pad, H, W, expected ops, legacy_pad=3 kept)
    ("MAX", (3, 3), (2, 2), (0, 0), 9, 10, ["MaxPool"], True),
    ("MAX", (3, 2), (2, 1), (1, 1), 8, 7, ["MaxPool"], True),
    # Caffe drops the last column although only H is padded; Caffe2's rule would keep an empty window
    ("MAX", (3, 1), (3, 3), (1, 0), 6, 5, ["MaxPool"], False),
    ("AVE", (3, 3), (2, 2), (0, 0), 8, 9, ["AveragePool"], True),       # ceil windows clipped to the image
    ("AVE", (3, 3), (1, 1), (1, 1), 6, 7, ["AveragePool"], True),       # count_include_pad
    ("AVE", (3, 3), (2, 2), (1, 1), 8, 9, ["PadImage", "AveragePool"], True),  # clipped to the padded border
    ("AVE", (2, 2), (4, 4), (1, 1), 10, 10, ["PadImage", "AveragePool"], False),  # a window dropped in the padding
    ("AVE", (3, 5), (2, 1), (2, 1), 19, 29, ["PadImage", "AveragePool"], True),
]


@pytest.mark.parametrize("pool,kernel,stride,pad,h,w,ops,legacy", POOL_CASES)
@pytest.mark.parametrize("remove_legacy_pad", [False, True])
def test_pooling_matches_caffe(pool, kernel, stride, pad, h, w, ops, legacy, remove_legacy_pad):
    x = normal(2, 3, h, w)
    y, net = one_layer(f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "y" pooling_param {{ pool: {pool}'
                       f' kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: {stride[1]}'
                       f' pad_h: {pad[0]} pad_w: {pad[1]} }} }}', x, remove_legacy_pad=remove_legacy_pad)
    close(y, caffe_pool_ref(x, kernel, stride, pad, pool))
    assert op_types(net) == ops
    has_legacy = any(a.name == "legacy_pad" for op in net.op for a in op.arg)
    assert has_legacy == (legacy and not remove_legacy_pad)


def test_pooling_floor_mode_global_and_other_batch_sizes():
    x = normal(2, 3, 7, 7)
    text = ('layer { name: "p" type: "Pooling" bottom: "data" top: "y" pooling_param { pool: AVE kernel_size: 2'
            ' stride: 2 pad: 1 round_mode: FLOOR } }\n'
            'layer { name: "g" type: "Pooling" bottom: "data" top: "g" pooling_param { pool: MAX'
            ' global_pooling: true } }')
    out, net = translate_run(inputs_text(data=(1, 3, 7, 7)) + text, {"data": x}, fetch=["y", "g"])
    close(out["y"], caffe_pool_ref(x, (2, 2), (2, 2), (1, 1), "AVE", ceil=False))
    close(out["g"], x.max(axis=(2, 3), keepdims=True))


def test_stochastic_pooling_is_refused():
    from nbcaffe.caffe_translator import UnsupportedLayerError

    with pytest.raises(UnsupportedLayerError, match="layer 'p' .*STOCHASTIC"):
        one_layer('layer { name: "p" type: "Pooling" bottom: "data" top: "y" pooling_param { pool: STOCHASTIC'
                  ' kernel_size: 2 } }', normal(1, 1, 4, 4))


# ------------------------------------------------------------------------------- dense

@pytest.mark.parametrize("extra,axis,transpose,bias", [
    ("", 1, False, True), ("axis: 2", 2, False, True), ("transpose: true", 1, True, True),
    ("bias_term: false axis: -1", 3, False, False)])
def test_inner_product(extra, axis, transpose, bias):
    x = normal(2, 3, 4, 5)
    k = int(np.prod(x.shape[axis:]))
    w = normal(k, 6) if transpose else normal(6, k)
    b = normal(6)
    y, _ = one_layer(f'layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "y" inner_product_param {{'
                     f' num_output: 6 {extra} }} }}', x, weights_net(fc=[w, b] if bias else [w]))
    flat = x.reshape(int(np.prod(x.shape[:axis])), k).astype(np.float64)
    want = flat @ (w if transpose else w.T) + (b if bias else 0)
    close(y, want.reshape(x.shape[:axis] + (6,)), rtol=1e-4, atol=1e-5)


def test_inner_product_legacy_4d_weights():
    x, w, b = normal(2, 12), normal(1, 1, 5, 12), normal(1, 1, 1, 5)
    y, _ = one_layer('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "y" inner_product_param {'
                     ' num_output: 5 } }', x, weights_net(fc=[w, b]))
    close(y, x @ w[0, 0].T + b.reshape(-1), rtol=1e-5)


# ------------------------------------------------------------------------------- elementwise

@pytest.mark.parametrize("layer,param,fn", [
    ("ReLU", "", lambda x: np.maximum(x, 0)),
    ("ReLU", "relu_param { negative_slope: 0.2 }", lambda x: np.where(x > 0, x, 0.2 * x)),
    ("Sigmoid", "", lambda x: 1 / (1 + np.exp(-x))),
    ("TanH", "", np.tanh),
    ("AbsVal", "", np.abs),
    ("BNLL", "", lambda x: np.log1p(np.exp(x))),
    ("ELU", "elu_param { alpha: 0.5 }", lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    ("Clip", "clip_param { min: -0.3 max: 0.5 }", lambda x: np.clip(x, -0.3, 0.5)),
    ("Swish", "swish_param { beta: 1.5 }", lambda x: x / (1 + np.exp(-1.5 * x))),
    ("Power", "power_param { power: 2 scale: 0.5 shift: 3 }", lambda x: (3 + 0.5 * x) ** 2),
    ("Power", "", lambda x: x),
    ("Exp", "exp_param { base: 2 scale: 0.5 shift: -1 }", lambda x: 2.0 ** (-1 + 0.5 * x)),
    ("Exp", "", np.exp),
    ("Log", "log_param { base: 10 scale: 2 shift: 12 }", lambda x: np.log10(12 + 2 * x)),
    ("Dropout", "dropout_param { dropout_ratio: 0.3 }", lambda x: x),
])
@pytest.mark.parametrize("in_place", [False, True])
def test_elementwise_layers(layer, param, fn, in_place):
    x = normal(2, 3, 4, 5)
    top = "data" if in_place else "y"
    y, _ = one_layer(f'layer {{ name: "l" type: "{layer}" bottom: "data" top: "{top}" {param} }}', x, fetch=(top,))
    close(y, fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(shared):
    x = normal(2, 3, 4, 4)
    slope = normal(1 if shared else 3)
    y, net = one_layer(f'layer {{ name: "pr" type: "PReLU" bottom: "data" top: "data" prelu_param {{'
                       f' channel_shared: {str(shared).lower()} }} }}', x, weights_net(pr=[slope]), fetch=("data",))
    close(y, np.where(x > 0, x, x * slope.reshape(1, -1, 1, 1)))
    assert net.op[0].input[1] == "data_Slope"


@pytest.mark.parametrize("shape,axis", [((2, 5), 1), ((2, 3, 4, 5), 1), ((2, 3, 4), 2), ((2, 3, 4, 5), -1),
                                        ((2, 3, 4, 5), 2)])
def test_softmax_normalises_one_axis(shape, axis):
    x = normal(*shape, scale=3.0)
    y, net = one_layer(f'layer {{ name: "s" type: "Softmax" bottom: "data" top: "y" softmax_param {{ axis: {axis}'
                       f' }} }}', x)
    close(y, softmax_ref(x.astype(np.float64), axis), rtol=1e-5, atol=1e-7)
    last = axis % len(shape) == len(shape) - 1
    assert op_types(net) == (["Softmax"] if last else ["Transpose", "Softmax", "Transpose"])


# ------------------------------------------------------------------------------- shapes

def test_concat_slice_split_silence():
    a, b = normal(2, 3, 4), normal(2, 5, 4)
    text = (inputs_text(a=a.shape, b=b.shape) +
            'layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "c" }\n'
            'layer { name: "c2" type: "Concat" bottom: "a" bottom: "a" top: "c2" concat_param { axis: -1 } }\n'
            'layer { name: "c3" type: "Concat" bottom: "a" bottom: "a" top: "c3" concat_param { concat_dim: 0 } }\n'
            'layer { name: "sl" type: "Slice" bottom: "c" top: "s0" top: "s1" top: "s2" slice_param { axis: 1'
            ' slice_point: 2 slice_point: 6 } }\n'
            'layer { name: "eq" type: "Slice" bottom: "c2" top: "e0" top: "e1" slice_param { slice_dim: 2 } }\n'
            'layer { name: "sp" type: "Split" bottom: "s2" top: "t0" top: "t1" }\n'
            'layer { name: "si" type: "Silence" bottom: "t1" }\n')
    out, net = translate_run(text, {"a": a, "b": b})
    c = np.concatenate([a, b], axis=1)
    close(out["c3"], np.concatenate([a, a], axis=0))
    close(out["s0"], c[:, :2])
    close(out["s1"], c[:, 2:6])
    close(out["t0"], c[:, 6:])
    close(out["e0"], a)
    close(out["e1"], a)
    assert "t1" not in net.external_output and "c" not in net.external_output


@pytest.mark.parametrize("param,want_shape", [
    ("shape { dim: 0 dim: -1 }", (2, 60)),
    ("shape { dim: 0 dim: 3 dim: 20 }", (2, 3, 20)),
    ("shape { dim: 3 dim: 1 } axis: 1 num_axes: 1", (2, 3, 1, 4, 5)),
    ("shape { dim: -1 } axis: -3", (2, 3, 20)),  # Caffe: start axis = rank + axis + 1
    ("shape { dim: 1 } axis: 1 num_axes: 0", (2, 1, 3, 4, 5)),
    ("shape { dim: 0 dim: 1 dim: 1 dim: -1 dim: 1 } axis: 1 num_axes: 1", (2, 3, 1, 1, 1, 1, 4, 5)),
])
def test_reshape(param, want_shape):
    x = normal(2, 3, 4, 5)
    y, _ = one_layer(f'layer {{ name: "r" type: "Reshape" bottom: "data" top: "y" reshape_param {{ {param} }} }}', x)
    close(y, x.reshape(want_shape))


def test_reshape_and_flatten_keep_the_batch_free():
    text = (inputs_text(data=(1, 3, 4, 5)) +
            'layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 0 dim: 12'
            ' dim: -1 } } }\n'
            'layer { name: "f" type: "Flatten" bottom: "data" top: "f" flatten_param { axis: 2 } }\n')
    x = normal(4, 3, 4, 5)  # a larger batch than declared
    out, _ = translate_run(text, {"data": x})
    close(out["r"], x.reshape(4, 12, 5))
    close(out["f"], x.reshape(4, 3, 20))


@pytest.mark.parametrize("param,want", [
    ("", lambda x: x.reshape(2, -1)),
    ("flatten_param { axis: 0 }", lambda x: x.reshape(-1)),
    ("flatten_param { axis: 1 end_axis: 2 }", lambda x: x.reshape(2, 12, 5, 6)),
    ("flatten_param { axis: -3 end_axis: -2 }", lambda x: x.reshape(2, 3, 20, 6)),
])
def test_flatten(param, want):
    x = normal(2, 3, 4, 5, 6)
    y, _ = one_layer(f'layer {{ name: "f" type: "Flatten" bottom: "data" top: "y" {param} }}', x)
    close(y, want(x))


@pytest.mark.parametrize("order,perm", [([0, 2, 3, 1], (0, 2, 3, 1)), ([0, 2], (0, 2, 1, 3)), ([0, 1, 2, 3], None)])
def test_permute(order, perm):
    x = normal(2, 3, 4, 5)
    spec = " ".join(f"order: {a}" for a in order)
    y, net = one_layer(f'layer {{ name: "p" type: "Permute" bottom: "data" top: "y" permute_param {{ {spec} }} }}', x)
    close(y, x if perm is None else x.transpose(perm))
    assert op_types(net) == (["Copy"] if perm is None else ["Transpose"])


@pytest.mark.parametrize("param,index", [
    ("crop_param { axis: 2 offset: 1 offset: 2 }", (slice(None), slice(None), slice(1, 4), slice(2, 5))),
    ("crop_param { axis: 1 offset: 1 }", (slice(None), slice(1, 3), slice(1, 4), slice(1, 4))),
    ("", (slice(None), slice(None), slice(0, 3), slice(0, 3))),
])
def test_crop(param, index):
    x, ref = normal(2, 4, 6, 7), normal(2, 2, 3, 3)
    text = inputs_text(data=x.shape, ref=ref.shape) + \
        f'layer {{ name: "cr" type: "Crop" bottom: "data" bottom: "ref" top: "y" {param} }}'
    out, _ = translate_run(text, {"data": x, "ref": ref}, fetch=["y"])
    close(out["y"], x[index])


@pytest.mark.parametrize("param,fn,ops", [
    ("", lambda a, b, c: a + b + c, ["Sum"]),
    ("eltwise_param { coeff: 0.5 coeff: -2 coeff: 1 }", lambda a, b, c: 0.5 * a - 2 * b + c, ["WeightedSum"]),
    ("eltwise_param { operation: PROD }", lambda a, b, c: a * b * c, ["Mul", "Mul"]),
    ("eltwise_param { operation: MAX }", lambda a, b, c: np.maximum(np.maximum(a, b), c), ["Max"]),
])
def test_eltwise(param, fn, ops):
    a, b, c = normal(2, 3, 4), normal(2, 3, 4), normal(2, 3, 4)
    text = inputs_text(a=a.shape, b=b.shape, c=c.shape) + \
        f'layer {{ name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "a" {param} }}'
    out, net = translate_run(text, {"a": a, "b": b, "c": c}, fetch=["a"])
    close(out["a"], fn(a, b, c).astype(np.float64))
    assert op_types(net) == ops


@pytest.mark.parametrize("op,axis,coeff,fn", [
    ("SUM", 0, 1.0, lambda x: x.sum()),
    ("MEAN", 1, 1.0, lambda x: x.reshape(2, -1).mean(axis=1)),
    ("ASUM", -1, 0.5, lambda x: 0.5 * np.abs(x).sum(axis=-1)),
    ("SUMSQ", 2, 2.0, lambda x: 2.0 * (x ** 2).sum(axis=(2, 3))),
])
def test_reduction(op, axis, coeff, fn):
    x = normal(2, 3, 4, 5)
    y, _ = one_layer(f'layer {{ name: "r" type: "Reduction" bottom: "data" top: "y" reduction_param {{'
                     f' operation: {op} axis: {axis} coeff: {coeff} }} }}', x)
    close(y, np.asarray(fn(x.astype(np.float64))), rtol=1e-5)


# ------------------------------------------------------------------------------- normalisation

def test_lrn_both_regions():
    x = normal(2, 5, 6, 7, scale=2.0)
    text = (inputs_text(data=x.shape) +
            'layer { name: "a" type: "LRN" bottom: "data" top: "a" lrn_param { local_size: 3 alpha: 0.3'
            ' beta: 0.6 k: 2 } }\n'
            'layer { name: "w" type: "LRN" bottom: "data" top: "w" lrn_param { local_size: 5 alpha: 0.4 beta: 0.75'
            ' norm_region: WITHIN_CHANNEL } }\n')
    out, _ = translate_run(text, {"data": x}, fetch=["a", "w"])
    close(out["a"], lrn_across_ref(x, 3, 0.3, 0.6, 2.0))
    close(out["w"], lrn_within_ref(x, 5, 0.4, 0.75))


def bn_ref(x, mean, var, eps, gamma=1.0, beta=0.0):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * np.reshape(gamma, shape[:x.ndim]) \
        + np.reshape(beta, shape[:x.ndim])


def test_batch_norm_with_scale_is_folded():
    x = normal(2, 3, 4, 5)
    mean, var, factor = normal(3), np.abs(normal(3)) + 0.5, np.array([4.0], F32)
    gamma, beta = normal(3), normal(3)
    text = (inputs_text(data=x.shape) +
            'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param { eps: 0.001 } }\n'
            'layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }\n')
    out, net = translate_run(text, {"data": x}, weights_net(bn=[mean * 4, var * 4, factor], sc=[gamma, beta]),
                             fetch=["data"])
    close(out["data"], bn_ref(x, mean, var, 1e-3, gamma, beta), rtol=1e-4)
    assert op_types(net) == ["SpatialBN"]
    assert list(net.op[0].input[1:]) == ["data_scale", "data_bias", "data_mean", "data_var"]


def test_batch_norm_forms():
    x = normal(4, 3)
    mean, var = normal(3), np.abs(normal(3)) + 0.5
    # 2-D input, zero scale factor (Caffe then uses zero statistics), five-blob NVCaffe layout
    for blobs, want in [([mean, var, np.array([0.0], F32)], x / np.sqrt(1e-5)),
                        ([mean, var, np.array([1.0], F32), np.full(3, 2.0, F32), np.full(3, 0.5, F32)],
                         bn_ref(x, mean, var, 1e-5, 2.0, 0.5))]:
        y, _ = one_layer('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "y" }', x, weights_net(bn=blobs))
        close(y, want, rtol=1e-4)
    # use_global_stats false: batch statistics even in TEST
    y, net = one_layer('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "y" batch_norm_param {'
                       ' use_global_stats: false } }', x, weights_net(bn=[mean, var, np.array([1.0], F32)]))
    close(y, bn_ref(x, x.mean(axis=0), x.var(axis=0), 1e-5), rtol=1e-4)
    assert len(net.op[0].output) == 5


@pytest.mark.parametrize("param,blob_shape,bcast", [
    ("", (3,), (1, 3, 1, 1)), ("scale_param { axis: 1 num_axes: 2 bias_term: true }", (3, 4), (1, 3, 4, 1)),
    ("scale_param { num_axes: 0 }", (), (1, 1, 1, 1)),
    ("scale_param { axis: -1 bias_term: true }", (5,), (1, 1, 1, 5))])
def test_scale(param, blob_shape, bcast):
    x, s, b = normal(2, 3, 4, 5), normal(*blob_shape), normal(*blob_shape)
    bias = "bias_term" in param
    y, _ = one_layer(f'layer {{ name: "s" type: "Scale" bottom: "data" top: "y" {param} }}', x,
                     weights_net(s=[s, b] if bias else [s]))
    close(y, x * s.reshape(bcast) + (b.reshape(bcast) if bias else 0))


def test_scale_and_bias_with_two_bottoms():
    x, s = normal(2, 3, 4), normal(3, 4)
    text = (inputs_text(data=x.shape, s=s.shape) +
            'layer { name: "sc" type: "Scale" bottom: "data" bottom: "s" top: "y" }\n'
            'layer { name: "bi" type: "Bias" bottom: "y" bottom: "s" top: "z" }\n'
            'layer { name: "b2" type: "Bias" bottom: "data" top: "w" bias_param { axis: 2 } }\n')
    b = normal(4)
    out, _ = translate_run(text, {"data": x, "s": s}, weights_net(b2=[b]), fetch=["y", "z", "w"])
    close(out["y"], x * s)
    close(out["z"], x * s + s)
    close(out["w"], x + b)


@pytest.mark.parametrize("param", ["", "mvn_param { across_channels: true eps: 0.1 }",
                                   "mvn_param { normalize_variance: false }"])
def test_mvn(param):
    x = normal(2, 3, 4, 5, scale=2.0) + 1
    y, _ = one_layer(f'layer {{ name: "m" type: "MVN" bottom: "data" top: "y" {param} }}', x)
    rows = x.reshape(2 if "across" in param else 6, -1).astype(np.float64)
    rows = rows - rows.mean(axis=1, keepdims=True)
    if "false" not in param:
        rows /= np.sqrt((rows ** 2).mean(axis=1, keepdims=True)) + (0.1 if "eps" in param else 1e-9)
    close(y, rows.reshape(x.shape))


def test_instance_norm_and_parameter_layers():
    x, w, b = normal(2, 3, 4, 5), normal(3), normal(3)
    p = normal(2, 3)
    text = (inputs_text(data=x.shape) +
            'layer { name: "in" type: "InstanceNorm" bottom: "data" top: "y" }\n'
            'layer { name: "pp" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } } }\n')
    out, _ = translate_run(text, {"data": x}, weights_net(**{"in": [w, b], "pp": [p]}), fetch=["y", "p"])
    m, v = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    close(out["y"], (x - m) / np.sqrt(v + 1e-5) * w.reshape(1, 3, 1, 1) + b.reshape(1, 3, 1, 1), rtol=1e-4)
    close(out["p"], p)


# ------------------------------------------------------------------------------- classifiers

def test_roi_pooling():
    x = normal(2, 3, 8, 8)
    rois = np.array([[0, 0, 0, 7, 7], [1, 2, 2, 5, 6]], F32)
    text = (inputs_text(data=x.shape, rois=rois.shape) +
            'layer { name: "r" type: "ROIPooling" bottom: "data" bottom: "rois" top: "y" roi_pooling_param {'
            ' pooled_h: 2 pooled_w: 2 spatial_scale: 1 } }\n')
    out, _ = translate_run(text, {"data": x, "rois": rois}, fetch=["y"])
    close(out["y"][0], x[0].reshape(3, 2, 4, 2, 4).max(axis=(2, 4)))
    # RoI 1: cells x 2..5, y 2..6 -> bins of 2.5 rows x 2 columns: rows [2, 5), [4, 7); columns [2, 4), [4, 6)
    want = np.array([[x[1, :, r0:r1, c0:c1].max(axis=(1, 2)) for c0, c1 in ((2, 4), (4, 6))]
                     for r0, r1 in ((2, 5), (4, 7))]).transpose(2, 0, 1)
    close(out["y"][1], want)


def test_loss_and_accuracy_layers_in_train_phase():
    scores = normal(6, 4, scale=2.0)
    labels = np.array([0, 3, 1, 1, 2, 3], F32)
    text = (inputs_text(data=scores.shape, label=(6,)) +
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss"'
            ' loss_weight: 2 }\n'
            'layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "acc" accuracy_param {'
            ' top_k: 2 } include { phase: TEST } }\n'
            'layer { name: "acc1" type: "Accuracy" bottom: "data" bottom: "label" top: "acc1" }\n')
    feeds = {"data": scores, "label": labels}
    out, net = translate_run(text, feeds, fetch=["loss", "acc1"], is_test=False)
    p = softmax_ref(scores.astype(np.float64), 1)
    close(out["loss"], np.asarray(2 * -np.log(p[np.arange(6), labels.astype(int)]).mean()), rtol=1e-5)
    close(out["acc1"], np.asarray((scores.argmax(axis=1) == labels).mean()))
    assert "acc" not in net.external_output  # excluded: TRAIN phase
    out, net = translate_run(text, feeds, fetch=["acc"])
    top2 = np.argsort(-scores, axis=1)[:, :2]
    close(out["acc"], np.asarray(np.mean([labels[i] in top2[i] for i in range(6)])))


def test_net_level_inputs_and_multi_top_input_layer():
    a, b = normal(1, 2, 3, 3), normal(2, 4)
    text = ('input: "a" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
            'layer { name: "in" type: "Input" top: "b" top: "c" input_param { shape { dim: 2 dim: 4 } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "a" top: "ra" }\n'
            'layer { name: "e" type: "Eltwise" bottom: "b" bottom: "c" top: "bc" }\n')
    out, net = translate_run(text, {"a": a, "b": b, "c": b})
    assert list(net.external_input) == ["a", "b", "c"]
    assert list(net.external_output) == ["ra", "bc"]
    close(out["bc"], 2 * b)


def test_parameter_names_never_collide():
    """A Scale running in place on a Convolution's top would reuse `<top>_w` (Caffe2 overwrote
    the convolution weight with it); the second parameter gets a numbered name."""
    x, w, b, s = normal(1, 2, 5, 5), normal(3, 2, 3, 3), normal(3), normal(3)
    text = (inputs_text(data=x.shape) +
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 3'
            ' kernel_size: 3 } }\n'
            'layer { name: "s" type: "Scale" bottom: "c" top: "c" }\n')
    out, net = translate_run(text, {"data": x}, weights_net(c=[w, b], s=[s]), fetch=["c"])
    assert list(net.external_input) == ["data", "c_w", "c_b", "c_w_1"]
    close(out["c"], conv_ref(x, w, b) * s.reshape(1, 3, 1, 1), rtol=1e-4)
