"""Looking inside nets: a shape/parameter/FLOP summary and a NaN/Inf hunt over whole nets.

* :func:`net_summary` prints, without running anything, every op with the shapes and dtypes
  of the blobs it writes (from ``workspace.InferShapesAndTypes``), its FLOP estimate
  (``nbcaffe.cost``) and the parameter table with the total count.
* :func:`check_finite` is a context manager: every net run inside it (RunNet, RunNetOnce,
  RunPlan) checks each op's float outputs right after the op and stops at the first NaN or
  Inf with a NonFiniteError naming that op, its index, the Python line that created it, its
  inputs, and where the bad value sits.  :func:`run_net_checked` is the one-call form.  The
  check costs a pass over every output, so it is a debugging mode, not a default.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from nbcaffe import cost, errors, threads, utils, workspace
from nbcaffe import net as _net
from nbcaffe.operator import wrap_failure
from nbcaffe.proto import caffe2_pb2

# ---------------------------------------------------------------------------- net_summary


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _flop_text(value) -> str:
    if value is None:
        return "?"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return str(int(value))


class NetSummary:
    """What :func:`net_summary` found: ``ops`` rows (index, type, name, outputs with shape and
    dtype, flops), ``params`` {name: shape}, ``param_count``, ``total_flops``; ``str()`` is
    the printed table."""

    def __init__(self, name, ops, inputs, params, text):
        self.name = name
        self.ops = ops
        self.inputs = inputs
        self.params = params
        self.param_count = sum(int(np.prod(s)) for s in params.values() if s is not None)
        self.total_flops = sum(row["flops"] or 0 for row in ops)
        self.text = text

    def __str__(self):
        return self.text

    def __repr__(self):
        return (f"NetSummary({self.name!r}: {len(self.ops)} ops, {self.param_count:,} parameters,"
                f" {_flop_text(self.total_flops)}FLOP per run)")


def net_summary(net, input_shapes=None, input_types=None, params=None, init_net=None, file=sys.stdout):
    """Print a table of ``net``: for every op its output blobs' shapes and dtypes and its FLOP
    estimate, then the parameters and their total count.  Nothing runs.

    Args:
        net: a ModelHelper/CNNModelHelper (its ``param_init_net`` gives the parameter shapes and
            its ``params`` the parameter list), a core.Net or a NetDef.
        input_shapes: {blob: shape} for blobs not in the current workspace (e.g. the data batch).
        input_types: {blob: numpy dtype or TensorProto.DataType} (default float32).
        params: parameter blob names (default: the model's params; for a bare net, none).
        init_net: a net whose fill ops give parameter shapes (default: the model's param_init_net).
        file: where to print (None: print nothing).

    Returns:
        A :class:`NetSummary`.

    Example:
        >>> summary = net_summary(model, input_shapes={"data": (64, 1, 28, 28)})  # doctest: +SKIP
    """
    main = getattr(net, "net", net)
    if init_net is None:
        init_net = getattr(net, "param_init_net", None)
    if params is None:
        params = [str(p) for p in getattr(net, "params", [])]
    net_def = main if isinstance(main, caffe2_pb2.NetDef) else main.Proto()
    types = {}
    for blob, dtype in (input_types or {}).items():
        types[blob] = dtype if isinstance(dtype, int) else utils.data_type_of(np.dtype(dtype))
    nets = [init_net, net_def] if init_net is not None else [net_def]
    shapes, dtypes = workspace.InferShapesAndTypes(nets, blob_dimensions=dict(input_shapes or {}), blob_types=types)
    shapes = {blob: tuple(shape) for blob, shape in shapes.items()}

    def dtype_name(blob):
        try:
            return utils.dtype_of(dtypes[blob]).name
        except (KeyError, errors.NbcaffeError, TypeError):
            return "?"

    rows = []
    for index, op in enumerate(net_def.op):
        in_shapes = [shapes.get(b) for b in op.input]
        out_shapes = [shapes.get(b) for b in op.output]
        try:
            flops = cost.flops(op, in_shapes, out_shapes) if all(s is not None for s in in_shapes + out_shapes) \
                else None
        except Exception:  # noqa: BLE001  (an estimate: an odd op gives '?', never a failure)
            flops = None
        rows.append({"index": index, "type": op.type, "name": op.name,
                     "outputs": [(b, shapes.get(b), dtype_name(b)) for b in op.output], "flops": flops})
    produced = {b for op in net_def.op for b in op.output}
    param_set = set(params)
    inputs = [b for b in net_def.external_input if b not in param_set and b not in produced]
    param_shapes = {p: (tuple(shapes[p]) if p in shapes else None) for p in params}
    text = _format(net_def.name, rows, inputs, param_shapes, shapes, dtype_name)
    summary = NetSummary(net_def.name, rows, inputs, param_shapes, "")
    summary.text = text.replace("{params}", f"{summary.param_count:,}").replace(
        "{flops}", _flop_text(summary.total_flops))
    if file is not None:
        print(summary.text, file=file)
    return summary


def _format(name, rows, inputs, param_shapes, shapes, dtype_name) -> str:
    head = f"Net '{name}': {len(rows)} ops, {{params}} parameters, {{flops}}FLOP per run (estimate)"
    table = [("#", "op", "output", "shape", "dtype", "FLOPs")]
    for row in rows:
        label = row["type"] + (f" ({row['name']})" if row["name"] else "")
        outs = row["outputs"] or [("-", None, "")]
        for k, (blob, shape, dtype) in enumerate(outs):
            first = k == 0
            table.append((str(row["index"]) if first else "", label if first else "", blob,
                          _shape_text(shape) if blob != "-" else "", dtype,
                          _flop_text(row["flops"]) if first else ""))
    widths = [max(len(r[i]) for r in table) for i in range(6)]
    lines = [head]
    for r in table:
        cells = [r[i].rjust(widths[i]) if i in (0, 5) else r[i].ljust(widths[i]) for i in range(6)]
        lines.append("  " + "  ".join(cells).rstrip())
    if inputs:
        lines.append("Inputs: " + ", ".join(f"{b} {_shape_text(shapes.get(b))} {dtype_name(b)}" for b in inputs))
    if param_shapes:
        lines.append("Parameters:")
        width = max(len(p) for p in param_shapes)
        for p, shape in param_shapes.items():
            count = f"{int(np.prod(shape)):,}" if shape is not None else "?"
            lines.append(f"  {p.ljust(width)}  {_shape_text(shape).ljust(18)} {count:>12}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- NaN hunting


def _host(value):
    return value if isinstance(value, np.ndarray) else value.copy_to_host()


def _non_finite(value) -> bool:
    if value is None or not hasattr(value, "dtype") or np.dtype(value.dtype).kind not in "fc":
        return False
    return not np.isfinite(_host(value)).all()


def _check_outputs(op):
    from nbcaffe.ops.debug import describe_non_finite

    for name in op.output_names:
        value = op.blobs.get(name)
        if _non_finite(value):
            bad_inputs = [n for n in op.input_names if n != name and _non_finite(op.blobs.get(n))]
            message = f"first NaN/Inf of the run: output {describe_non_finite(name, value)}"
            if bad_inputs:
                message += (f"\n  but input(s) {', '.join(repr(b) for b in bad_inputs)} already held NaN/Inf: they"
                            f" come from outside this net (fed, or written by another net)")
            else:
                message += "\n  every input of this op was finite, so this op produced it"
            raise errors.NonFiniteError(message)


def _checked_run(self, num_iter=1):
    """NetInstance.run with a NaN/Inf check after every op (installed by check_finite)."""
    op = None
    try:
        with threads.REGION:
            for _ in range(num_iter):
                for op in self.ops:
                    op.run()
                    _check_outputs(op)
    except Exception as exc:
        if op is None:
            raise
        raise wrap_failure(op, exc) from exc
    return True


@contextlib.contextmanager
def check_finite():
    """Inside the block, every net run stops at the first op that writes a NaN or Inf.

    Example:
        >>> with check_finite():                      # doctest: +SKIP
        ...     workspace.RunNet(train_model.net)
        NonFiniteError: Op #7 Log in net 'train' failed: first NaN/Inf of the run: output 'y' ...
    """
    original = _net.NetInstance.run
    if original is _checked_run:  # nested: already checking
        yield
        return
    _net.NetInstance.run = _checked_run
    try:
        yield
    finally:
        _net.NetInstance.run = original


def run_net_checked(name, num_iter=1):
    """``workspace.RunNet(name, num_iter)`` with :func:`check_finite` on."""
    with check_finite():
        return workspace.RunNet(name, num_iter)
