"""Inference rewrites of a predict net, for the Predictor's private running net.

``optimize_for_inference(net_def, ws, keep)`` returns a rewritten copy of ``net_def`` (the
caller's NetDef is never changed) and the names of the constant blobs the rewrite read, after
the init net has filled ``ws`` with the parameters:

* **Affine folds.**  A per-channel affine op after a Conv or a test-mode SpatialBN folds into it:
  SpatialBN(is_test=1) after a Conv (y·s + t with s = scale / sqrt(var + epsilon), t = bias −
  mean·s), and Mul / Add by a constant with one value per channel (the translated Caffe1
  ``Scale`` layer: DenseNet's Mul + Add after each SpatialBN; PyTorch's bias Add after a Conv).
  Conv: W[m] · s[m], b · s + t; SpatialBN: scale · s, bias · s + t.  The folded values are
  computed in float64 and stored under new blob names (the original parameters stay as they
  are: other ops, or the caller, may read them).
* **Conv + Relu** becomes ``ConvRelu`` (nbcaffe/ops/conv.py): the ReLU rides the pass that adds
  the bias, so Y is written once.
* **Conv + PRelu** becomes ``ConvPRelu`` (MTCNN): one op instead of two (the slope stays an
  input, read at run time).
* **Conv + Sum + Relu** (ResNet's block output: the Conv's value and one other blob summed, then
  a ReLU) becomes ``ConvSumRelu`` at the Sum's place: the residual and the ReLU ride the bias
  pass.

A rewrite needs the intermediate value to be read by the next op only (versions, not names:
Caffe1 translations run Relu in place), not to be the final value of one of ``keep`` (the
outputs asked for), and every folded operand to be a float array in ``ws`` that no op of the net
writes.  Only nets whose ops all run on the CPU are rewritten (the fused ops are CPU ops).
Results differ from the unfused net by float rounding only (the tests hold them to 1e-5
relative).
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from nbcaffe.devices import CPU
from nbcaffe.proto import caffe2_pb2

CONV_TYPES = ("Conv", "Conv1D", "Conv2D", "Conv3D")
_runs = itertools.count()  # folded blob names stay unique between predictors sharing a workspace


def _args(op):
    out = {}
    for a in op.arg:
        if a.HasField("f"):
            out[a.name] = a.f
        elif a.HasField("i"):
            out[a.name] = a.i
        elif a.HasField("s"):
            out[a.name] = a.s.decode() if isinstance(a.s, bytes) else a.s
        elif a.ints:
            out[a.name] = list(a.ints)
    return out


def _on_cpu(net_def):
    default = net_def.device_option.device_type if net_def.HasField("device_option") else CPU
    return all((op.device_option.device_type if op.HasField("device_option") else default) == CPU
               for op in net_def.op)


class _Graph:
    """The ops (None once folded away) with, per blob name, the indices of the ops that read and
    that write it; indices never shift, so the index stays valid while ops are removed."""

    def __init__(self, ops):
        self.ops = ops
        self.reindex()

    def reindex(self):
        self.reads = defaultdict(list)
        self.writes = defaultdict(list)
        for i, op in enumerate(self.ops):
            if op is None:
                continue
            for name in op.input:
                self.reads[name].append(i)
            for name in op.output:
                self.writes[name].append(i)

    def readers(self, i, name):
        """Indices of the live ops that read the value op ``i`` wrote to ``name``."""
        nxt = min((k for k in self.writes[name] if k > i and self.ops[k] is not None), default=len(self.ops))
        return sorted({k for k in self.reads[name] if i < k <= nxt and self.ops[k] is not None})

    def final(self, i, name):
        """Whether the value op ``i`` writes to ``name`` is the one the net ends with."""
        return not any(k > i and self.ops[k] is not None for k in self.writes[name])

    def touched_between(self, name, i, j):
        return any(i < k < j and self.ops[k] is not None for k in self.reads[name] + self.writes[name])

    def move_output(self, i, j, old, new):
        """Op ``i`` now writes ``new`` (op ``j``'s output) instead of ``old``; op ``j`` is gone."""
        self.writes[old].remove(i)
        self.writes[new] = sorted([k for k in self.writes[new] if k != j] + [i])
        self.ops[j] = None


class _Optimizer:
    def __init__(self, net_def, ws, keep, fed):
        self.net = net_def
        self.ws = ws
        self.keep = set(keep)
        self.fed = set(fed)
        self.written = {name for op in net_def.op for name in op.output}
        self.used = set()  # constants a rewrite read
        self.count = 0
        self.prefix = f"__predictor_folded_{next(_runs)}"

    # ------------------------------------------------------------------ constants
    def const(self, name):
        if name in self.written or name in self.fed:
            return None
        value = self.ws.blobs.get(name)
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            return None
        return value

    def store(self, base, value, dtype):
        self.count += 1
        name = f"{self.prefix}_{self.count}/{base}"
        self.ws.feed_blob(name, np.ascontiguousarray(value, dtype=dtype), caffe2_pb2.DeviceOption())
        return name

    # ------------------------------------------------------------------ followers
    def affine(self, op, value_name, channels, channel_axis):
        """(s, t) float64 per-channel vectors when ``op`` computes value·s + t per channel of
        the value it reads under ``value_name`` (on a tensor whose channel axis is
        ``channel_axis``: 1 for NCHW, -1 for NHWC), else None."""
        args = _args(op)
        if op.type == "SpatialBN":
            if not args.get("is_test") or len(op.output) != 1 or len(op.input) != 5 or op.input[0] != value_name:
                return None
            order = args.get("order", "NCHW")
            if (order == "NCHW") != (channel_axis == 1):
                return None
            vals = [self.const(n) for n in op.input[1:]]
            if any(v is None or v.size != channels for v in vals) or value_name in op.input[1:]:
                return None
            scale, bias, mean, var = (v.astype(np.float64).reshape(-1) for v in vals)
            s = scale / np.sqrt(var + float(args.get("epsilon", 1e-5)))
            return s, bias - mean * s, [*op.input[1:]]
        if op.type in ("Mul", "Add"):
            if len(op.input) != 2 or op.input[0] != value_name or op.input[1] == value_name:
                return None
            v = self.const(op.input[1])
            if v is None:
                return None
            if v.size == 1:  # a scalar broadcasts under either rule
                vec = np.full(channels, float(v.reshape(-1)[0]))
            elif args.get("broadcast") and v.shape == (channels,) and \
                    args.get("axis", -1) == (1 if channel_axis == 1 else -1):
                vec = v.astype(np.float64)
            elif not args.get("broadcast") and channel_axis == -1 and v.shape == (channels,):
                vec = v.astype(np.float64)  # NumPy-style: a trailing (C,) is the NHWC channel axis
            else:
                return None
            if op.type == "Mul":
                return vec, np.zeros(channels), [op.input[1]]
            return np.ones(channels), vec, [op.input[1]]
        return None

    # ------------------------------------------------------------------ producers
    def producer(self, op):
        """(channels, channel axis, dtype) of an op whose output an affine op can fold into."""
        args = _args(op)
        if op.type in CONV_TYPES:
            w = self.const(op.input[1])
            if w is None or (len(op.input) > 2 and self.const(op.input[2]) is None):
                return None
            return w.shape[0], (1 if args.get("order", "NCHW") == "NCHW" else -1), w.dtype
        if op.type == "SpatialBN" and args.get("is_test") and len(op.output) == 1 and len(op.input) == 5:
            vals = [self.const(n) for n in op.input[1:]]
            if any(v is None for v in vals) or len({v.size for v in vals}) != 1:
                return None
            return vals[0].size, (1 if args.get("order", "NCHW") == "NCHW" else -1), vals[0].dtype
        return None

    def fold(self, op, s, t, dtype):
        """Rewrite producer ``op`` in place so its output becomes output·s + t."""
        if op.type in CONV_TYPES:
            w = self.const(op.input[1]).astype(np.float64)
            b = self.const(op.input[2]).astype(np.float64).reshape(-1) if len(op.input) > 2 else np.zeros(w.shape[0])
            self.used.update(op.input[1:])
            new_w = self.store(op.input[1], w * s.reshape((-1,) + (1,) * (w.ndim - 1)), dtype)
            new_b = self.store(op.input[2] if len(op.input) > 2 else op.output[0] + "_b", b * s + t, dtype)
            del op.input[1:]
            op.input.extend([new_w, new_b])
            return
        scale, bias = (self.const(n).astype(np.float64).reshape(-1) for n in op.input[1:3])
        self.used.update(op.input[1:3])
        op.input[1] = self.store(op.input[1], scale * s, dtype)
        op.input[2] = self.store(op.input[2], bias * s + t, dtype)

    # ------------------------------------------------------------------ the pass
    def follower(self, graph, i, name):
        """The index of the one live op reading the value op ``i`` wrote to ``name``, when op
        ``i`` may take over its output; else None."""
        readers = graph.readers(i, name)
        if len(readers) != 1:
            return None
        j = readers[0]
        nxt = graph.ops[j]
        if len(nxt.output) != 1:
            return None
        out = nxt.output[0]
        if out != name and ((name in self.keep and graph.final(i, name)) or graph.touched_between(out, i, j)
                            or out in graph.ops[i].input):
            return None
        return j

    def prelu_ok(self, op, nxt, name):
        """Conv -> PRelu(conv output, slope) with PRelu's channel axis where the Conv's is."""
        if nxt.type != "PRelu" or len(nxt.input) != 2 or nxt.input[0] != name or nxt.input[1] == name:
            return False
        if nxt.input[1] in self.written or nxt.output[0] == nxt.input[1]:
            return False  # the slope is read at run time, but must not be computed by this net
        return _args(nxt).get("order", "NCHW") == _args(op).get("order", "NCHW")

    def residual(self, graph, i, op, name):
        """Conv (op ``i``, output ``name``) -> Sum with one other blob -> Relu, each value read by
        the next op only: one ConvSumRelu at the Sum's place (the other summand may be computed
        after the Conv, as ResNet's projection shortcut is).  Whether it was rewritten."""
        readers = graph.readers(i, name)
        if len(readers) != 1:
            return False
        j = readers[0]
        add = graph.ops[j]
        if add.type != "Sum" or len(add.input) != 2 or len(add.output) != 1 or name not in add.input:
            return False
        other = add.input[1] if add.input[0] == name else add.input[0]
        total = add.output[0]
        after = graph.readers(j, total)
        if other == name or len(after) != 1:
            return False
        k = after[0]
        relu = graph.ops[k]
        if relu.type != "Relu" or list(relu.input) != [total]:
            return False
        out = relu.output[0]
        lost = [(i, name)] + ([(j, total)] if total != out else [])
        if any(n in self.keep and graph.final(at, n) for at, n in lost):
            return False
        if out in (op.input[0], other) or (out != total and graph.touched_between(out, j, k)) \
                or any(i < at < j and graph.ops[at] is not None for at in graph.writes[op.input[0]]):
            return False
        fused = caffe2_pb2.OperatorDef()
        fused.CopyFrom(op)
        fused.type = "ConvSumRelu"
        if len(fused.input) == 2:
            w = self.const(op.input[1])
            fused.input.append(self.store(name + "_b", np.zeros(w.shape[0]), w.dtype))
        fused.input.append(other)
        fused.output[0] = out
        graph.ops[i] = None
        graph.ops[k] = None
        graph.ops[j] = fused
        graph.reindex()
        return True

    def run(self):
        graph = _Graph([op for op in self.net.op])
        for i, op in enumerate(graph.ops):
            if op is None:
                continue
            info = self.producer(op)
            while info is not None:
                name = op.output[0]
                j = self.follower(graph, i, name)
                if j is None:
                    if op.type in CONV_TYPES:
                        self.residual(graph, i, op, name)
                    break
                nxt = graph.ops[j]
                channels, axis, dtype = info
                fold = self.affine(nxt, name, channels, axis)
                if fold is not None:
                    s, t, consts = fold
                    self.used.update(consts)
                    self.fold(op, s, t, dtype)
                elif op.type in CONV_TYPES and nxt.type == "Relu" and list(nxt.input) == [name]:
                    op.type = "ConvRelu"
                    info = None
                elif op.type in CONV_TYPES and self.prelu_ok(op, nxt, name):
                    op.type = "ConvPRelu"
                    if len(op.input) == 2:
                        w = self.const(op.input[1])
                        op.input.append(self.store(name + "_b", np.zeros(w.shape[0]), w.dtype))
                    op.input.append(nxt.input[1])
                    info = None
                else:
                    if op.type in CONV_TYPES:
                        self.residual(graph, i, op, name)
                    break
                graph.move_output(i, j, name, nxt.output[0])
                op.output[0] = nxt.output[0]
        out = caffe2_pb2.NetDef()
        out.CopyFrom(self.net)
        del out.op[:]
        out.op.extend([op for op in graph.ops if op is not None])
        return out


def optimize_for_inference(net_def, ws, keep=(), fed=()):
    """(rewritten copy of ``net_def``, set of constant blobs the rewrites read).

    ``ws``: the workspace holding the parameters (folded values are added to it under new
    names); ``keep``: blobs that must keep their values (the outputs asked for); ``fed``: blobs
    the caller feeds on each run (never treated as constants).  A net with an op off the CPU
    comes back unchanged.
    """
    copy = caffe2_pb2.NetDef()
    copy.CopyFrom(net_def)
    if not _on_cpu(copy):
        return copy, set()
    optimizer = _Optimizer(copy, ws, set(keep) | set(net_def.external_output), fed)
    return optimizer.run(), optimizer.used
