"""Which cases of ONNX's backend test suite nbcaffe runs, and why the others do not run.

* A case is **covered** when every operator in its graph has an nbcaffe converter and every
  graph input/output is a tensor of a type nbcaffe computes with (see
  ``nbcaffe.onnx.helper.SUPPORTED_ELEM_TYPES``: no float16/bfloat16/float8/int4/string,
  no sequences or optionals).  Covered cases run on the CPU in the normal test suite.
* Covered cases that do not pass are listed in :data:`EXCLUDES` with the reason; they are
  reported as skipped with that reason (docs/onnx.md lists them too).
* Cases that are not covered are not collected; ``python -m tests.onnx.conformance`` prints
  the full accounting (node cases per operator, passes, failures, exclusions).
"""

from __future__ import annotations

import collections
import os

# Covered cases that fail, with the reason (matched against the case name without _cpu).
EXCLUDES = {
    "test_training_dropout": "training-mode Dropout draws a random mask; nbcaffe's generator cannot reproduce the"
                             " NumPy draws the expected output was made with (ratio 0 cases run and pass)",
    "test_training_dropout_default": "training-mode Dropout: random mask (see test_training_dropout)",
    "test_training_dropout_default_mask": "training-mode Dropout: random mask (see test_training_dropout)",
    "test_training_dropout_mask": "training-mode Dropout: random mask (see test_training_dropout)",
}

KINDS = {"node": "NodeModel", "real": "RealModel", "simple": "SimpleModel",
         "pytorch-converted": "PyTorchConvertedModel", "pytorch-operator": "PyTorchOperatorModel"}


def _onnx_data_dir():
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def load_model(test_case):
    """The ModelProto of a backend test case (node cases carry it; model cases are files)."""
    import onnx

    if test_case.model is not None:
        return test_case.model
    if test_case.model_dir is not None:
        return onnx.load(os.path.join(test_case.model_dir, "model.onnx"))
    if test_case.url and test_case.url.startswith("onnx/backend/test/data/light/"):
        return onnx.load(os.path.join(_onnx_data_dir(), "light", os.path.basename(test_case.url)))
    return None  # a networked model zoo case


def uncovered_reason(model):
    """None when nbcaffe covers the model, else why not."""
    from nbcaffe.onnx import converter, helper

    if model is None:
        return "needs a download from the network"
    supported = set(converter.supported_ops())
    missing = sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")} - supported)
    other = sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if missing or other:
        return "operators without a converter: " + ", ".join(missing + other)
    for vi in list(model.graph.input) + list(model.graph.output):
        t = vi.type
        if not t.HasField("tensor_type"):
            return f"value '{vi.name}' is a {t.WhichOneof('value')}, not a tensor"
        if t.tensor_type.elem_type not in helper.SUPPORTED_ELEM_TYPES:
            return f"value '{vi.name}' has element type {helper.elem_type_name(t.tensor_type.elem_type)}"
    return None


def cases():
    """{(kind, case name): (TestCase, uncovered reason or None)} for the whole suite."""
    from onnx.backend.test.loader import load_model_tests

    table = {}
    for kind in KINDS:
        for tc in load_model_tests(kind=kind):
            table[(kind, tc.name)] = (tc, uncovered_reason(load_model(tc)))
    return table


def main():
    """Run every covered case on the CPU and print the accounting used in docs/onnx.md."""
    import tempfile
    import time
    import unittest

    os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="nbcaffe_onnx_home_"))
    from onnx.backend.test import BackendTest

    from nbcaffe.onnx.backend import NbcaffeBackend

    table = cases()
    runner = BackendTest(NbcaffeBackend, __name__)
    classes = runner.test_cases
    results = collections.Counter()
    failures = []
    per_op = collections.defaultdict(lambda: [0, 0])
    start = time.time()
    for (kind, name), (_tc, reason) in sorted(table.items()):
        if reason is not None:
            results[(kind, "uncovered")] += 1
            continue
        cls = classes[f"OnnxBackend{KINDS[kind]}Test"]
        outcome = unittest.TestResult()
        cls(f"{name}_cpu").run(outcome)
        ok = outcome.wasSuccessful() and not outcome.skipped
        results[(kind, "passed" if ok else "failed")] += 1
        if kind == "node":
            op = name[len("test_"):].split("_")[0]
            per_op[op][0] += 1
            per_op[op][1] += ok
        if not ok:
            detail = (outcome.errors or outcome.failures or [(None, "skipped")])[0][1].strip().splitlines()[-1]
            failures.append((kind, name, detail[:200]))
    for kind in KINDS:
        total = sum(v for (k, _s), v in results.items() if k == kind)
        passed, failed = results[(kind, "passed")], results[(kind, "failed")]
        print(f"{kind:18s} total {total:5d}  covered {passed + failed:5d}  passed {passed:5d}  failed {failed:3d}")
    print(f"elapsed {time.time() - start:.1f} s")
    for kind, name, detail in failures:
        print(f"FAILED {kind} {name}: {EXCLUDES.get(name, detail)}")


if __name__ == "__main__":
    main()
