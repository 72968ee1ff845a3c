"""Helpers for the Caffe translator unit tests: hand-built prototxts with weights, and NumPy
versions of Caffe's layers written from Caffe's definitions (not from the translator)."""

from __future__ import annotations

import itertools

import numpy as np

from nbcaffe import caffe_translator as ct
from nbcaffe import workspace
from nbcaffe.proto import caffe_pb2

F32 = np.float32


def inputs_text(**shapes) -> str:
    """Input layers, one per keyword: ``data=(2, 3, 4, 4)``."""
    lines = []
    for name, shape in shapes.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        lines.append(f'layer {{ name: "{name}_input" type: "Input" top: "{name}"'
                     f' input_param {{ shape {{ {dims} }} }} }}')
    return "\n".join(lines) + "\n"


def weights_net(**layers) -> caffe_pb2.NetParameter:
    """A caffemodel-like NetParameter: ``conv1=[w, b]`` -> layer 'conv1' with those blobs."""
    net = caffe_pb2.NetParameter()
    for name, arrays in layers.items():
        layer = net.layer.add()
        layer.name = name
        for a in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(int(d) for d in np.shape(a))
            blob.data.extend(np.asarray(a, F32).reshape(-1).tolist())
    return net


def translate_run(text, feeds, weights=None, fetch=None, **kwargs):
    """(outputs dict, predict net): translate, run init + predict on ``feeds``, fetch ``fetch``
    (default: the net's external outputs)."""
    init_net, predict_net = ct.TranslatePretrainedModel(text, weights, **kwargs)
    names = list(fetch) if fetch is not None else list(predict_net.external_output)
    with workspace.temp_workspace("_caffe_layer_test_"):
        workspace.RunNetOnce(init_net)
        for name, value in feeds.items():
            workspace.FeedBlob(name, np.asarray(value))
        workspace.RunNetOnce(predict_net)
        return {name: workspace.FetchBlob(name) for name in names}, predict_net


def op_types(net) -> list:
    return [op.type for op in net.op]


def conv_ref(x, w, b=None, stride=None, pad=None, dilation=None, group=1):
    """N-D cross-correlation as Caffe's ConvolutionLayer: x (N, C, *sp), w (M, C/g, *k)."""
    rank = x.ndim - 2
    stride = stride or (1,) * rank
    pad = pad or (0,) * rank
    dilation = dilation or (1,) * rank
    kernel = w.shape[2:]
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out_sp = [(n + 2 * p - (d * (k - 1) + 1)) // s + 1
              for n, p, d, k, s in zip(x.shape[2:], pad, dilation, kernel, stride)]
    m, cg = w.shape[:2]
    mg = m // group
    out = np.zeros((x.shape[0], m, *out_sp))
    for g in range(group):
        for taps in itertools.product(*(range(k) for k in kernel)):
            index = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                          for t, d, s, o in zip(taps, dilation, stride, out_sp))
            patch = xp[(slice(None), slice(g * cg, (g + 1) * cg)) + index]
            wk = w[(slice(g * mg, (g + 1) * mg), slice(None)) + taps]
            out[:, g * mg:(g + 1) * mg] += np.einsum("nc...,mc->nm...", patch, wk)
    if b is not None:
        out += b.reshape((1, -1) + (1,) * rank)
    return out


def deconv_ref(x, w, b=None, stride=(1, 1), pad=(0, 0), group=1):
    """Caffe's DeconvolutionLayer (2-D): x (N, Cin, H, W), w (Cin, Cout/g, kh, kw)."""
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cig = cin // group
    full = np.zeros((n, cog * group, (h - 1) * stride[0] + kh, (wd - 1) * stride[1] + kw))
    for g in range(group):
        for i in range(kh):
            for j in range(kw):
                full[:, g * cog:(g + 1) * cog, i:i + stride[0] * (h - 1) + 1:stride[0],
                     j:j + stride[1] * (wd - 1) + 1:stride[1]] += np.einsum(
                    "nchw,cm->nmhw", x[:, g * cig:(g + 1) * cig].astype(np.float64), w[g * cig:(g + 1) * cig, :, i, j])
    out = full[:, :, pad[0]:full.shape[2] - pad[0], pad[1]:full.shape[3] - pad[1]]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out


def caffe_pool_ref(x, kernel, stride, pad, mode, ceil=True):
    """Caffe's PoolingLayer::Forward_cpu (MAX / AVE), output size included."""
    n, c, height, width = x.shape
    sizes = []
    for size, k, s, p in zip((height, width), kernel, stride, pad):
        span = size + 2 * p - k
        o = (-(-span // s) if ceil else span // s) + 1
        if any(pad) and (o - 1) * s >= size + p:
            o -= 1
        sizes.append(o)
    out = np.zeros((n, c, *sizes))
    for i in range(sizes[0]):
        for j in range(sizes[1]):
            hs, ws = i * stride[0] - pad[0], j * stride[1] - pad[1]
            he, we = min(hs + kernel[0], height + pad[0]), min(ws + kernel[1], width + pad[1])
            count = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, height), min(we, width)
            window = x[:, :, hs:he, ws:we].astype(np.float64)
            out[:, :, i, j] = window.max(axis=(2, 3)) if mode == "MAX" else window.sum(axis=(2, 3)) / count
    return out


def lrn_across_ref(x, size, alpha, beta, k):
    sq = x.astype(np.float64) ** 2
    pre = (size - 1) // 2
    padded = np.pad(sq, ((0, 0), (pre, size - 1 - pre), (0, 0), (0, 0)))
    total = sum(padded[:, i:i + x.shape[1]] for i in range(size))
    return x * (k + alpha / size * total) ** -beta


def lrn_within_ref(x, size, alpha, beta):
    sq = x.astype(np.float64) ** 2
    p = (size - 1) // 2
    padded = np.pad(sq, ((0, 0), (0, 0), (p, p), (p, p)))
    total = sum(padded[:, :, i:i + x.shape[2], j:j + x.shape[3]] for i in range(size) for j in range(size))
    return x * (1 + alpha * total / size ** 2) ** -beta


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
