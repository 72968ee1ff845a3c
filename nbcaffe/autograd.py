"""Autograd: gradient makers and the backward pass that emits gradient operators.

A *gradient maker* is a function ``maker(op_def, g_output) -> (grad_ops, g_input)``:
given a forward OperatorDef and the gradient blob name of each of its outputs (None where
no gradient flows), it returns the OperatorDefs that compute input gradients and the
gradient blob name of each input (None where an input gets no gradient).  That is
Caffe2's Python ``GradientRegistry`` contract, so user makers written for Caffe2 work.

Op classes declare theirs as ``gradient = simple_gradient("ReluGradient", [O(0), GO(0)],
[GI(0)])`` or as a function using :class:`GradientContext`; ``gradient = None`` means the op
has no gradient (it stops gradient flow, like Caffe2's NO_GRADIENT).

:func:`backward_pass` walks the forward ops in reverse over an SSA versioning of blobs:
seeds come from ``ConstantFill(value=1.0)`` into ``<y>_autogen_grad`` (or caller blobs), a
blob version read by several ops gets partial gradients ``_<x>_grad_autosplit_<k>``
summed by one ``Sum`` into ``<x>_grad``, gradient ops copy the forward op's device option,
engine and arguments and set ``is_gradient_op``, and a gradient op that needs a forward
blob which a later in-place op overwrote raises an error naming both ops.
"""

from __future__ import annotations

import collections

from nbcaffe import errors, registry, utils
from nbcaffe.proto import caffe2_pb2


class GradientError(errors.NbcaffeError):
    """Gradient construction failed (no gradient for an op, overwritten inputs, ...)."""


# ------------------------------------------------------------------------ maker helpers


class _Ref:
    __slots__ = ("kind", "index")

    def __init__(self, kind, index):
        self.kind = kind
        self.index = index

    def __repr__(self):
        return f"{self.kind}({self.index})"


def I(i):  # noqa: E743  (Caffe2's names)
    """Forward input ``i``."""
    return _Ref("I", i)


def O(i):  # noqa: E743
    """Forward output ``i``."""
    return _Ref("O", i)


def GO(i):
    """Gradient of forward output ``i``."""
    return _Ref("GO", i)


def GI(i):
    """Gradient of forward input ``i`` (named ``<input>_grad``)."""
    return _Ref("GI", i)


class GradientContext:
    """Helper for writing makers: resolves I/O/GO/GI and builds gradient OperatorDefs that
    inherit the forward op's device option, engine and arguments."""

    def __init__(self, op, g_output):
        self.op = op
        self.g_output = list(g_output)
        self.g_input = [None] * len(op.input)
        self.ops = []

    def I(self, i):  # noqa: E743
        return self.op.input[i]

    def O(self, i):  # noqa: E743
        return self.op.output[i]

    def GO(self, i):
        g = self.g_output[i] if i < len(self.g_output) else None
        if g is None:
            raise GradientError(
                f"{self.op.type}: its gradient needs the gradient of output {i} ('{self.op.output[i]}'),"
                f" but no gradient flows into that output")
        return g

    def has_GO(self, i) -> bool:
        return i < len(self.g_output) and self.g_output[i] is not None

    def GI(self, i):
        name = self.op.input[i] + "_grad"
        self.g_input[i] = name
        return name

    def alias(self, i, name):
        """Input ``i``'s gradient is the existing blob ``name`` (no op computes it)."""
        self.g_input[i] = name

    def resolve(self, ref):
        if isinstance(ref, _Ref):
            return getattr(self, ref.kind)(ref.index)
        return str(ref)

    def add(self, op_type, inputs, outputs, copy_arguments=True, **args):
        """Append a gradient op; ``args`` override/extend the copied forward arguments."""
        grad = caffe2_pb2.OperatorDef()
        grad.type = op_type
        grad.input.extend(self.resolve(r) for r in inputs)
        grad.output.extend(self.resolve(r) for r in outputs)
        if self.op.HasField("device_option"):
            grad.device_option.CopyFrom(self.op.device_option)
        if self.op.engine:
            grad.engine = self.op.engine
        if copy_arguments:
            grad.arg.extend(a for a in self.op.arg if a.name not in args)
        for key, value in args.items():
            if value is not None:
                grad.arg.append(utils.MakeArgument(key, value))
        grad.is_gradient_op = True
        self.ops.append(grad)
        return grad

    def result(self):
        return self.ops, self.g_input


def simple_gradient(op_type, inputs, outputs, copy_arguments=True, **args):
    """A maker emitting one gradient op ``op_type(inputs) -> outputs`` (I/O/GO/GI refs)."""

    def maker(op, g_output):
        ctx = GradientContext(op, g_output)
        ctx.add(op_type, inputs, outputs, copy_arguments, **args)
        return ctx.result()

    maker.grad_op_type = op_type
    maker.input_refs = tuple(inputs)  # lets the backward pass spot an in-place forward op whose input it reads
    return maker


def pass_through_gradient(op, g_output):
    """Maker of ops whose input gradient *is* the output gradient (Sum, StopGradient-free
    identities): every input's gradient aliases output 0's, no op is added."""
    ctx = GradientContext(op, g_output)
    for i in range(len(op.input)):
        ctx.alias(i, ctx.GO(0))
    return ctx.result()


class GradientRegistry:
    """Caffe2's registry of Python gradient makers (they take precedence over the schema's)."""

    gradient_registry_: dict = {}

    @classmethod
    def RegisterGradient(cls, op_type):
        """Decorator: ``@GradientRegistry.RegisterGradient("MyOp") def maker(op, g_output)``."""

        def wrapper(func):
            cls.gradient_registry_[op_type] = func
            return func

        return wrapper

    @classmethod
    def maker_for(cls, op_type):
        if op_type in cls.gradient_registry_:
            return cls.gradient_registry_[op_type]
        if op_type not in registry.SCHEMAS:
            raise GradientError(
                f"Exception when creating gradient for [{op_type}]: the op type is not registered."
                f"{errors.did_you_mean(op_type, registry.SCHEMAS)}")
        maker = registry.GRADIENTS.get(op_type)
        if maker is registry.NOT_YET:
            raise GradientError(
                f"Exception when creating gradient for [{op_type}]: no gradient registered for {op_type}")
        return maker

    @classmethod
    def GetGradientForOp(cls, op, g_output):
        """(gradient ops, input gradient names) for one op; GradientError if it has none."""
        maker = cls.maker_for(op.type)
        if maker is None:
            raise GradientError(f"Exception when creating gradient for [{op.type}]: {op.type} has no gradient")
        grad_ops, g_input = maker(op, g_output)
        return list(grad_ops), list(g_input)

    @classmethod
    def GetBackwardPass(cls, operators, ys, ys_generate_gradient=False):
        return backward_pass(list(operators), ys)


# ------------------------------------------------------------------------ backward pass


def _normalise_ys(ys):
    """{name: seed blob name or None} from a blob, a list or a dict."""
    if isinstance(ys, dict):
        return {str(k): (str(v) if v is not None else None) for k, v in ys.items()}
    if isinstance(ys, (list, tuple)):
        return {str(y): None for y in ys}
    return {str(ys): None}


class _Generator:
    """One partial gradient of a blob version: produced by grad op ``op`` (output slot
    ``slot``), or an alias of an existing gradient blob when ``op`` is None."""

    __slots__ = ("op", "slot", "name")

    def __init__(self, op, slot, name):
        self.op = op
        self.slot = slot
        self.name = name


def backward_pass(operators, ys):
    """Gradient ops for ``operators`` (forward order) and the {blob: gradient} map.

    Args:
        operators: forward OperatorDefs.
        ys: blobs to differentiate (gradients seeded with ones), or {blob: seed blob}.

    Returns:
        (gradient OperatorDefs in run order, {forward blob name: gradient blob name}).
    """
    ys = _normalise_ys(ys)
    # SSA: version of every blob as each op reads and writes it.
    version = collections.defaultdict(int)
    in_versions, out_versions = [], []
    producer_of = {}
    for index, op in enumerate(operators):
        in_versions.append([version[b] for b in op.input])
        outs = []
        for b in op.output:
            version[b] += 1
            outs.append(version[b])
            producer_of[(b, version[b])] = index
        out_versions.append(outs)
    final_version = dict(version)

    grad_ops = []
    # gradient generators per (blob, version); the current gradient name of each blob version
    generators = collections.defaultdict(list)
    gradient_of = {}
    for y, seed in ys.items():
        key = (y, final_version.get(y, 0))
        if seed is None:
            seed = y + "_autogen_grad"
            fill = caffe2_pb2.OperatorDef(type="ConstantFill", input=[y], output=[seed])
            fill.arg.append(utils.MakeArgument("value", 1.0))
            producer = producer_of.get(key)
            if producer is not None and operators[producer].HasField("device_option"):
                fill.device_option.CopyFrom(operators[producer].device_option)
            grad_ops.append(fill)
        gradient_of[key] = seed

    def accumulate(key):
        """Collapse the generators of blob version ``key`` into one gradient name."""
        gens = generators.pop(key, [])
        if not gens:
            return
        if len(gens) == 1:
            gradient_of[key] = gens[0].name
            return
        blob = key[0]
        target = blob + "_grad"
        names = []
        for k, gen in enumerate(gens):
            if gen.op is not None:
                renamed = f"_{target}_autosplit_{k}"
                gen.op.output[gen.slot] = renamed
                gen.name = renamed
            names.append(gen.name)
        sum_op = caffe2_pb2.OperatorDef(type="Sum", input=names, output=[target])
        first = next((g.op for g in gens if g.op is not None), None)
        if first is not None and first.HasField("device_option"):
            sum_op.device_option.CopyFrom(first.device_option)
        sum_op.is_gradient_op = True
        grad_ops.append(sum_op)
        gradient_of[key] = target

    for index in range(len(operators) - 1, -1, -1):
        op = operators[index]
        for b, v in zip(op.output, out_versions[index]):
            accumulate((b, v))
        g_output = [gradient_of.get((b, v)) for b, v in zip(op.output, out_versions[index])]
        if all(g is None for g in g_output):
            continue
        maker = GradientRegistry.maker_for(op.type)
        if maker is None:
            continue  # no gradient: the flow stops here (StopGradient, fills, counters, ...)
        _check_inplace_input_reads(maker, op, index)
        try:
            new_ops, g_input = maker(op, g_output)
        except GradientError:
            raise
        except Exception as exc:
            raise GradientError(f"Exception when creating gradient for [{op.type}] (op #{index}): {exc}") from exc
        new_ops = list(new_ops)
        _check_forward_inputs_alive(new_ops, op, index, operators, in_versions, out_versions, final_version)
        grad_ops.extend(new_ops)
        for i, (blob, v) in enumerate(zip(op.input, in_versions[index])):
            g = g_input[i] if i < len(g_input) else None
            if g is None:
                continue
            g = str(g)
            producer = None
            for grad_op in reversed(new_ops):
                if g in grad_op.output:
                    producer = (grad_op, list(grad_op.output).index(g))
                    break
            generators[(blob, v)].append(_Generator(producer[0] if producer else None,
                                                   producer[1] if producer else None, g))
    for key in list(generators):
        accumulate(key)
    # a blob's entry is the gradient of its earliest version (what was fed or initialised)
    input_to_grad = {}
    for (blob, _v), g in sorted(gradient_of.items(), key=lambda kv: kv[0][1], reverse=True):
        input_to_grad[blob] = g
    return grad_ops, input_to_grad


def _check_inplace_input_reads(maker, op, index):
    """An op that ran in place overwrote input i; a gradient that reads I(i) cannot be formed."""
    for ref in getattr(maker, "input_refs", ()):
        if isinstance(ref, _Ref) and ref.kind == "I" and ref.index < len(op.input) and op.input[ref.index] in op.output:
            name = op.input[ref.index]
            raise GradientError(
                f"Exception when creating gradient for [{op.type}] (op #{index}): it ran in place on '{name}', but"
                f" its gradient needs input {ref.index}'s value before the op overwrote it. Write the op's output"
                f" to a new blob.")


def _check_forward_inputs_alive(new_ops, op, index, operators, in_versions, out_versions, final_version):
    """A gradient op reads forward blobs after the whole forward net ran; refuse if a later
    in-place op overwrote a version it needs (the classic in-place trap)."""
    needed = {}
    for b, v in zip(op.input, in_versions[index]):
        needed.setdefault(b, v)
    for b, v in zip(op.output, out_versions[index]):
        needed[b] = v
    for grad_op in new_ops:
        for name in grad_op.input:
            if name in needed and final_version.get(name, 0) != needed[name]:
                overwriter = next(j for j in range(index + 1, len(operators)) if name in operators[j].output)
                raise GradientError(
                    f"Exception when creating gradient for [{op.type}] (op #{index}): its gradient op"
                    f" {grad_op.type} reads '{name}' as op #{index} saw it (version {needed[name]}), but op"
                    f" #{overwriter} {operators[overwriter].type} overwrites '{name}' later (final version"
                    f" {final_version[name]}). Write that op's output to a new blob instead of in place.")
