"""Run a NetDef in PyTorch with the workspace's parameters: the peer of the benchmark CLI.

:class:`TorchNet` interprets the ops of a (forward) NetDef with ``torch.nn.functional`` calls,
holding the parameters as ``torch.nn.Parameter`` copies, so the same model can be timed
eagerly in PyTorch — forward, or forward + backward + SGD — and its outputs compared with
nbcaffe's.  Only NCHW nets and the op types the zoo models use are supported; anything else
raises with the op type.  PyTorch is imported lazily (an optional peer).
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe import errors, schema

SUPPORTED = ("FC", "Conv", "Relu", "Sigmoid", "Tanh", "Softmax", "MaxPool", "AveragePool", "SpatialBN", "Sum",
             "LabelCrossEntropy", "AveragedLoss", "SoftmaxWithLoss", "Dropout", "LRN", "Concat", "Accuracy")


def _args(op_def):
    return {a.name: schema.argument_value(a) for a in op_def.arg}


def _pair(args, one, two, plural, default):
    if plural in args:
        return tuple(args[plural])
    if one in args:
        return (args[one],) * 2
    if two[0] in args or two[1] in args:
        return (args.get(two[0], default), args.get(two[1], default))
    return (default, default)


def _pads(args):
    if "pads" in args:
        t, l, b, r = args["pads"]
        return t, l, b, r
    if "pad" in args:
        p = args["pad"]
        return p, p, p, p
    return tuple(args.get(k, 0) for k in ("pad_t", "pad_l", "pad_b", "pad_r"))


class TorchNet:
    """A NetDef as an eager PyTorch program.

    Args:
        net_def: forward ops (gradient ops are skipped).
        params: {blob name: NumPy array} — parameters (become ``torch.nn.Parameter``) and
            constants (running BN statistics become buffers).
        trainable: names of the parameters to optimise.
    """

    def __init__(self, net_def, params, trainable=()):
        import torch

        self.torch = torch
        forward = []
        for op in net_def.op:  # the forward part: up to the backward pass (seed fill or gradient ops)
            if op.is_gradient_op or any(o.endswith("_autogen_grad") for o in op.output):
                break
            forward.append(op)
        self.ops = [op for op in forward if op.type in SUPPORTED]
        self.unsupported = sorted({op.type for op in forward if op.type not in SUPPORTED})
        for op in self.ops:
            if _args(op).get("order", "NCHW") != "NCHW":
                raise errors.UnsupportedOperatorError(f"TorchNet: {op.type} uses order NHWC; the peer runs NCHW nets")
        trainable = set(trainable)
        self.values = {}
        self.parameters = []
        for name, value in params.items():
            tensor = torch.from_numpy(np.ascontiguousarray(value)).clone()
            if name in trainable:
                tensor = torch.nn.Parameter(tensor)
                self.parameters.append(tensor)
            self.values[name] = tensor

    def forward(self, feeds, training=False):
        """Run the ops on ``feeds`` ({name: array or tensor}); returns the blob dict."""
        torch = self.torch
        F = torch.nn.functional
        blobs = dict(self.values)
        for name, value in feeds.items():
            blobs[name] = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        for op in self.ops:
            a = _args(op)
            x = [blobs[i] for i in op.input]
            t = op.type
            if t == "FC":
                axis = a.get("axis", 1)
                lead = x[0].shape[:axis]
                y = F.linear(x[0].reshape(math.prod(lead), -1), x[1].reshape(x[1].shape[0], -1), x[2])
                out = [y.reshape(*lead, -1)]
            elif t == "Conv":
                stride = _pair(a, "stride", ("stride_h", "stride_w"), "strides", 1)
                dilation = _pair(a, "dilation", ("dilation_h", "dilation_w"), "dilations", 1)
                pt, pl, pb, pr = _pads(a)
                inp = x[0]
                if (pt, pl) != (pb, pr):
                    inp = F.pad(inp, (pl, pr, pt, pb))
                    pad = (0, 0)
                else:
                    pad = (pt, pl)
                out = [F.conv2d(inp, x[1], x[2] if len(x) > 2 else None, stride, pad, dilation, a.get("group", 1))]
            elif t in ("Relu", "Sigmoid", "Tanh"):
                out = [{"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}[t](x[0])]
            elif t == "Softmax":
                axis = a.get("axis", 1)
                shape = x[0].shape
                out = [torch.softmax(x[0].reshape(math.prod(shape[:axis]), -1), dim=1).reshape(shape)]
            elif t in ("MaxPool", "AveragePool"):
                if a.get("global_pooling"):
                    k = tuple(x[0].shape[2:])
                    stride, pad = (1, 1), (0, 0)
                else:
                    k = _pair(a, "kernel", ("kernel_h", "kernel_w"), "kernels", 1)
                    stride = _pair(a, "stride", ("stride_h", "stride_w"), "strides", 1)
                    pt, pl, pb, pr = _pads(a)
                    pad = (pt, pl)
                ceil = a.get("legacy_pad", 0) == 3
                if t == "MaxPool":
                    out = [F.max_pool2d(x[0], k, stride, pad, ceil_mode=ceil)]
                else:
                    out = [F.avg_pool2d(x[0], k, stride, pad, ceil_mode=ceil,
                                        count_include_pad=bool(a.get("count_include_pad", 0)))]
            elif t == "SpatialBN":
                eps = a.get("epsilon", 1e-5)
                if a.get("is_test", 0):
                    out = [F.batch_norm(x[0], x[3], x[4], x[1], x[2], False, 0.0, eps)]
                else:
                    rm, rv = x[3].detach().clone(), x[4].detach().clone()
                    y = F.batch_norm(x[0], rm, rv, x[1], x[2], True, 1.0 - a.get("momentum", 0.9), eps)
                    out = [y, rm, rv]
            elif t == "Sum":
                total = x[0]
                for other in x[1:]:
                    total = total + other
                out = [total]
            elif t == "LabelCrossEntropy":
                idx = x[1].long().reshape(-1)
                out = [-torch.log(torch.clamp(x[0][torch.arange(x[0].shape[0]), idx], min=1e-20))]
            elif t == "AveragedLoss":
                out = [x[0].mean()]
            elif t == "SoftmaxWithLoss":
                logits = x[0].reshape(x[0].shape[0], -1)
                out = [torch.softmax(logits, 1), F.cross_entropy(logits, x[1].long().reshape(-1))]
            elif t == "Dropout":
                out = [F.dropout(x[0], a.get("ratio", 0.5), training=training and not a.get("is_test", 0))]
            elif t == "LRN":
                size = a.get("size")
                out = [F.local_response_norm(x[0], size, a.get("alpha", 0.0), a.get("beta", 0.75), a.get("bias", 1.0))]
            elif t == "Concat":
                out = [torch.cat(x, dim=a.get("axis", 1))]
            else:  # Accuracy: not part of the timed computation
                continue
            for name, value in zip(op.output, out):
                blobs[name] = value
        return blobs


def import_torch():
    """torch, or None when the optional peer is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch
