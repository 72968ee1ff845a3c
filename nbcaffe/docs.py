"""The operator catalogue, written from the registry: ``python -m nbcaffe.docs``.

Writes ``docs/operators.md``: for every registered op its formula and doc (the class
docstring), inputs, outputs, arity, arguments with kinds and defaults, in-place rules, the
devices that have a kernel (CPU; CUDA), extra engines, whether it has a gradient (and the
gradient op) and the family module that defines it.

The output depends only on the source tree: CUDA presence is read from the kernels that
``nbcaffe/cuda/`` registers when imported, which works without a GPU (every kernel is a lazy
``@cuda.jit``), and is checked against each op's declared ``devices``; nothing about the
machine (GPU, simulator, paths) enters the text.  ``--check`` exits 1 when the committed
file differs (tests/test_docs.py runs it).

Regenerate after adding, removing, moving or re-documenting an op::

    python -m nbcaffe.docs
"""

from __future__ import annotations

import argparse
import difflib
import math
import pathlib
import re
import sys

from nbcaffe import registry
from nbcaffe.devices import CPU, CUDA

DEFAULT_OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "docs" / "operators.md"
COMMAND = "python -m nbcaffe.docs"


def load_cuda_kernels():
    """Import the CUDA mirror modules so their kernels register (no GPU needed); returns a
    note when that is impossible (numba-cuda missing), in which case ``devices`` is used."""
    try:
        import nbcaffe.cuda  # noqa: F401  (registration happens on import)
    except Exception as exc:  # noqa: BLE001  (any import failure: fall back, and say so)
        return f"nbcaffe.cuda could not be imported ({type(exc).__name__}: {exc}); CUDA column from `devices`"
    return None


def device_table(fallback=False):
    """{op type: [device names]} from registered kernels (or declared devices as a fallback);
    raises when a declared device has no kernel or a kernel has no declared device."""
    table, problems = {}, []
    for op_type, record in registry.SCHEMAS.items():
        names = []
        for device, label in ((CPU, "CPU"), (CUDA, "CUDA")):
            has = (op_type, device, "") in registry.KERNELS
            declared = device in record.devices
            if fallback:
                has = declared
            elif has != declared:
                problems.append(f"{op_type}: {label} kernel registered={has}, declared in devices={declared}")
            if has:
                names.append(label)
        table[op_type] = names
    if problems:
        raise SystemExit("the registry and the declared devices disagree:\n  " + "\n  ".join(problems))
    return table


def _default_text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_default_text(v) for v in value) + "]" if value else "[]"
    text = repr(value)
    if re.search(r" at 0x[0-9a-f]+", text):  # an object's default repr would change every run
        return type(value).__name__
    return text


def _arity(lo, hi) -> str:
    if lo == hi:
        return str(lo)
    if hi == math.inf:
        return f"{lo} or more"
    return f"{lo} to {hi}"


def _gradient_text(record) -> str:
    g = record.gradient
    if g is None:
        return "none (no gradient flows through it)"
    if g is registry.NOT_YET:
        return "not yet written"
    grad_type = getattr(g, "grad_op_type", None)
    return f"yes: `{grad_type}`" if grad_type else "yes (custom gradient maker)"


def _inplace_text(record) -> str:
    rule = record.op_class.inplace
    if callable(rule):
        return "any input may share its blob with any output"
    parts = []
    for i, j in sorted(record.enforce_inplace.items()):
        parts.append(f"output {j} must be input {i}")
    for i, j in sorted(record.inplace.items()):
        if record.enforce_inplace.get(i) != j:
            parts.append(f"output {j} may be input {i}")
    return "; ".join(parts) if parts else "no"


def _names(names, lo, hi) -> str:
    text = ", ".join(f"`{n}`" for n in names) if names else "none"
    if hi == math.inf and names:
        text += ", ..."
    return text


def _op_section(op_type, record, devices, engines) -> list:
    doc = record.doc.strip().splitlines()
    lines = [f"### {op_type}", ""]
    if record.alias_of:
        lines += [f"Alias of [`{record.alias_of}`](#{record.alias_of.lower()}).", ""]
    lines += [doc[0]] + doc[1:] + [""]
    lines.append(f"- **Inputs** ({_arity(record.min_inputs, record.max_inputs)}):"
                 f" {_names(record.inputs, record.min_inputs, record.max_inputs)}")
    lines.append(f"- **Outputs** ({_arity(record.min_outputs, record.max_outputs)}):"
                 f" {_names(record.outputs, record.min_outputs, record.max_outputs)}")
    lines.append(f"- **In place**: {_inplace_text(record)}")
    lines.append(f"- **Devices**: {', '.join(devices) or 'none'}"
                 + (f"; engines: {', '.join(engines)}" if engines else ""))
    lines.append(f"- **Gradient**: {_gradient_text(record)}")
    lines.append(f"- **Defined in**: `{record.op_class.__module__}`")
    if record.args:
        lines += ["", "| argument | kind | default | meaning |", "|---|---|---|---|"]
        for name in sorted(record.args):
            arg = record.args[name]
            meaning = (arg.doc or "").replace("|", "\\|") + (" (required)" if arg.required else "")
            lines.append(f"| `{name}` | {arg.kind} | `{_default_text(arg.default)}` | {meaning} |")
    lines.append("")
    return lines


def render(note=None) -> str:
    """The catalogue text (call :func:`load_cuda_kernels` first for the CUDA column)."""
    devices = device_table(fallback=note is not None)
    ops = sorted(registry.SCHEMAS, key=lambda t: (t.lower(), t))
    forward = [t for t in ops if not t.endswith(("Gradient", "Grad"))]
    lines = [
        "# Operator catalogue",
        "",
        f"Generated from the registry by `{COMMAND}`; do not edit by hand (tests/test_docs.py fails when",
        "this file is out of date).  Every op has a NumPy reference, usable with `engine=\"REFERENCE\"`.",
        "Arguments every op accepts and ignores (builder hints): `order`, `use_cudnn`,",
        "`cudnn_exhaustive_search`, `ws_nbytes_limit`, `is_test`, ... (`nbcaffe.schema.COMMON_IGNORED_ARGS`).",
        "",
        f"{len(ops)} operator types ({len(ops) - len(forward)} of them gradient ops);"
        f" {sum('CUDA' in devices[t] for t in ops)} have a CUDA kernel.",
        "",
        "| op | devices | gradient | family |",
        "|---|---|---|---|",
    ]
    for t in ops:
        record = registry.SCHEMAS[t]
        grad = "—" if record.gradient is None else ("yes" if record.has_gradient else "not yet")
        family = record.op_class.__module__.rsplit(".", 1)[-1]
        lines.append(f"| [`{t}`](#{t.lower()}) | {', '.join(devices[t])} | {grad} | {family} |")
    lines += ["", "## Operators", ""]
    for t in ops:
        engines = sorted({e for (op, _d, e) in registry.KERNELS
                          if op == t and e not in ("", registry.REFERENCE_ENGINE)})
        lines += _op_section(t, registry.SCHEMAS[t], devices[t], engines)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Write the operator catalogue from the registry.")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where to write (default: docs/operators.md)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    note = load_cuda_kernels()
    if note:
        print(note, file=sys.stderr)
    text = render(note)
    path = pathlib.Path(args.output)
    if args.check:
        current = path.read_text() if path.exists() else ""
        if current == text:
            return 0
        diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), str(path), "registry", lineterm="",
                                         n=1))
        print(f"{path} is out of date with the registry; regenerate it with `{COMMAND}` and commit it.\n"
              + "\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else ""), file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path} ({len(registry.SCHEMAS)} operators)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
