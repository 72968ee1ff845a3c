"""Operator schema pieces: declared arguments, argument parsing, shape-inference helpers.

An op class declares its arguments as ``args = {"axis": 1, "shape": Arg("ints", ())}``:
a plain default fixes the type from the default's Python type; :class:`Arg` states the
kind explicitly (needed when the default is ``None`` or an empty list).  Parsing happens
once per operator instance (at ``CreateNet``), never per run.
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe import errors

# Arguments that builders routinely attach to every op (brew's arg_scope, cuDNN hints) and
# that Caffe2 silently ignored where they mean nothing; every op accepts them.
COMMON_IGNORED_ARGS = frozenset({
    "order", "use_cudnn", "cudnn_exhaustive_search", "exhaustive_search", "ws_nbytes_limit",
    "float16_compute", "shared_buffer", "use_mkldnn", "is_test", "num_threads",
})

KINDS = ("int", "float", "bool", "str", "ints", "floats", "strings", "bytes_list", "net", "nets", "tensor",
         "float_array", "int_array", "any")


class Arg:
    """A declared operator argument.

    Args:
        kind: one of ``int float bool str ints floats strings bytes_list net nets tensor
            float_array int_array any`` (``strings`` decodes UTF-8, ``bytes_list`` keeps bytes).
            ``float_array``/``int_array`` parse the repeated field straight
            into a NumPy array (large ``values`` lists of GivenTensorFill).
        default: value used when the OperatorDef does not set the argument.
        doc: one line for the operator catalogue.
        required: the OperatorDef must set it.
    """

    __slots__ = ("kind", "default", "doc", "required")

    def __init__(self, kind, default=None, doc="", required=False):
        if kind not in KINDS:
            raise errors.RegistryError(f"unknown argument kind {kind!r}; use one of {KINDS}")
        self.kind = kind
        self.default = default
        self.doc = doc
        self.required = required

    def __repr__(self):
        return f"Arg({self.kind!r}, {self.default!r})"


def as_arg(value) -> Arg:
    """Turn a plain default into an :class:`Arg` (the type of the default fixes the kind)."""
    if isinstance(value, Arg):
        return value
    if isinstance(value, bool):
        return Arg("bool", value)
    if isinstance(value, int):
        return Arg("int", value)
    if isinstance(value, float):
        return Arg("float", value)
    if isinstance(value, str):
        return Arg("str", value)
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        if isinstance(first, bool) or isinstance(first, int):
            return Arg("ints", tuple(value))
        if isinstance(first, float):
            return Arg("floats", tuple(value))
        if isinstance(first, str):
            return Arg("strings", tuple(value))
    raise errors.RegistryError(
        f"cannot tell the kind of argument default {value!r}; declare it with Arg(kind, default)")


class ArgValues(dict):
    """Parsed arguments: a dict that also allows ``args.axis``.  ``given`` lists the names the
    OperatorDef set explicitly."""

    __slots__ = ("given",)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _field_of(arg) -> str:
    """Which value field an Argument proto carries ('' when none is set)."""
    for field in ("f", "i", "s", "n", "t"):
        if arg.HasField(field):
            return field
    for field in ("floats", "ints", "strings", "nets", "tensors", "qtensors"):
        if len(getattr(arg, field)):
            return field
    return ""


def _convert(kind, arg, where):
    field = _field_of(arg)

    def bad(expected):
        shown = field or "no value"
        return errors.ArgumentError(
            f"{where}: argument '{arg.name}' should be {expected} but the OperatorDef gives {shown}"
            f" ({_show_arg(arg)})")

    if kind == "any":
        return argument_value(arg)
    if kind == "int":
        if field == "i":
            return int(arg.i)
        if field == "f" and float(arg.f).is_integer():
            return int(arg.f)
        raise bad("an int (field i)")
    if kind == "bool":
        if field == "i":
            return bool(arg.i)
        if field == "f":
            return bool(arg.f)
        raise bad("a bool (field i)")
    if kind == "float":
        if field == "f":
            return float(arg.f)
        if field == "i":
            return float(arg.i)
        raise bad("a float (field f)")
    if kind == "str":
        if field == "s":
            return arg.s.decode("utf-8", errors="replace")
        raise bad("a string (field s)")
    if kind in ("ints", "int_array"):
        if field == "ints" or field == "":
            values = arg.ints
        elif field == "i":  # a single int where a list is expected: Caffe2 builders did this
            values = [arg.i]
        else:
            raise bad("a list of ints (field ints)")
        return np.asarray(values, dtype=np.int64) if kind == "int_array" else tuple(int(v) for v in values)
    if kind in ("floats", "float_array"):
        if field == "floats" or field == "":
            values = arg.floats
        elif field == "ints":
            values = arg.ints
        elif field in ("f", "i"):
            values = [getattr(arg, field)]
        else:
            raise bad("a list of floats (field floats)")
        if kind == "float_array":
            return np.asarray(values, dtype=np.float64)
        return tuple(float(v) for v in values)
    if kind == "strings":
        if field in ("strings", ""):
            return tuple(s.decode("utf-8", errors="replace") for s in arg.strings)
        if field == "s":
            return (arg.s.decode("utf-8", errors="replace"),)
        raise bad("a list of strings (field strings)")
    if kind == "bytes_list":
        if field in ("strings", ""):
            return tuple(bytes(s) for s in arg.strings)
        if field == "s":
            return (bytes(arg.s),)
        raise bad("a list of byte strings (field strings)")
    if kind == "net":
        if field == "n":
            return arg.n
        raise bad("a NetDef (field n)")
    if kind == "nets":
        if field in ("nets", ""):
            return list(arg.nets)
        raise bad("a list of NetDefs (field nets)")
    if kind == "tensor":
        if field == "t":
            return arg.t
        raise bad("a TensorProto (field t)")
    raise errors.RegistryError(f"unhandled argument kind {kind}")


def argument_value(arg):
    """The Python value of an Argument proto, whatever field it uses."""
    field = _field_of(arg)
    if field == "f":
        return float(arg.f)
    if field == "i":
        return int(arg.i)
    if field == "s":
        return arg.s.decode("utf-8", errors="replace")
    if field in ("n", "t"):
        return getattr(arg, field)
    if field == "floats":
        return tuple(float(v) for v in arg.floats)
    if field == "ints":
        return tuple(int(v) for v in arg.ints)
    if field == "strings":
        return tuple(s.decode("utf-8", errors="replace") for s in arg.strings)
    if field in ("nets", "tensors", "qtensors"):
        return list(getattr(arg, field))
    return None


def _show_arg(arg) -> str:
    value = argument_value(arg)
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def parse_args(declared: dict, op_def, where: str, strict: bool, ignored=()) -> ArgValues:
    """Parse ``op_def.arg`` against the declared arguments.

    Unknown names raise :class:`ArgumentError` (with close matches) when ``strict``; names in
    :data:`COMMON_IGNORED_ARGS` or ``ignored`` are always accepted and dropped.
    """
    values = ArgValues()
    values.given = set()
    for name, spec in declared.items():
        values[name] = spec.default
    seen = set()
    for arg in op_def.arg:
        name = arg.name
        if name in seen:
            raise errors.ArgumentError(f"{where}: argument '{name}' is given twice")
        seen.add(name)
        spec = declared.get(name)
        if spec is None:
            if strict and name not in COMMON_IGNORED_ARGS and name not in ignored:
                known = sorted(declared)
                raise errors.ArgumentError(
                    f"{where}: unknown argument '{name}' ({_show_arg(arg)})."
                    f"{errors.did_you_mean(name, known)} Known arguments: {', '.join(known) or 'none'}.")
            continue
        values[name] = _convert(spec.kind, arg, where)
        values.given.add(name)
    for name, spec in declared.items():
        if spec.required and name not in values.given:
            raise errors.ArgumentError(f"{where}: required argument '{name}' is missing")
    return values


# ---------------------------------------------------------------------------------------
# Shape inference helpers.  Each returns output shapes as tuples of ints.

def prod(shape) -> int:
    """Number of elements of a shape (1 for a 0-d shape)."""
    return int(math.prod(shape))


def canonical_axis(axis: int, ndim: int, what="axis") -> int:
    """Map a possibly negative axis into [0, ndim); raise ShapeError when out of range."""
    if not -ndim <= axis < ndim:
        raise errors.ShapeError(f"{what}={axis} is out of range for a {ndim}-d input")
    return axis + ndim if axis < 0 else axis


def flatten_2d(shape, axis) -> tuple[int, int]:
    """Caffe2's 2-D view of a shape: (prod(shape[:axis]), prod(shape[axis:]))."""
    if not 0 <= axis <= len(shape):
        raise errors.ShapeError(f"axis={axis} is out of range for shape {tuple(shape)}")
    return prod(shape[:axis]), prod(shape[axis:])


def numpy_broadcast(a, b) -> tuple:
    """NumPy multidirectional broadcast of two shapes; ShapeError when incompatible."""
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        raise errors.ShapeError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast") from None


def legacy_broadcast_sizes(a, b, axis: int) -> tuple[int, int, int]:
    """Caffe2's ``broadcast=1`` rule: view A as (pre, n, post) and B as (n,).

    B (with its leading and trailing 1s ignored) must equal a contiguous run of A's dims that
    starts at ``axis`` (``axis=-1`` means ``A.ndim - B.ndim``: B is a suffix of A).
    Raises ShapeError naming both shapes otherwise.
    """
    a, b = tuple(a), tuple(b)
    if len(b) > len(a):
        raise errors.ShapeError(f"broadcast=1: B {b} has more dims than A {a}")
    if axis == -1:
        axis = len(a) - len(b)
    lo = 0
    while lo < len(b) and b[lo] == 1:
        lo += 1
    hi = len(b) - 1
    while hi >= lo and b[hi] == 1:
        hi -= 1
    if axis < 0 or axis + len(b) > len(a):
        raise errors.ShapeError(f"broadcast=1: axis={axis} does not fit B {b} inside A {a}")
    for i in range(lo, hi + 1):
        if a[axis + i] != b[i]:
            raise errors.ShapeError(
                f"broadcast=1: B {b} must match A {a} from axis {axis}; A dim {axis + i} is"
                f" {a[axis + i]} but B dim {i} is {b[i]}")
    if hi < lo:  # B is all ones: a scalar broadcast
        return prod(a), 1, 1
    pre = prod(a[:axis + lo])
    n = prod(a[axis + lo:axis + hi + 1])
    post = prod(a[axis + hi + 1:])
    return pre, n, post


def same_as_input(index=0):
    """An infer function: every output has input ``index``'s shape and dtype."""

    def infer(args, shapes, dtypes):
        return [shapes[index]], [dtypes[index]]

    return infer
