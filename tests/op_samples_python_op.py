"""Sweep samples of the Python op: functions registered here, their gradients checked by the
sweep's finite differences (the op's own behaviours are in tests/ops/test_python_op.py)."""

from __future__ import annotations

import numpy as np

from nbcaffe.ops import python_op
from tests.op_samples import case


def _tanh2(inputs, outputs):
    outputs[0].feed(2 * np.tanh(inputs[0].data))


def _tanh2_grad(inputs, outputs):
    x, _y, dy = inputs
    outputs[0].feed(dy.data * 2 * (1 - np.tanh(x.data) ** 2))


def _mul_add(inputs, outputs):
    a, b = inputs[0].data, inputs[1].data
    outputs[0].feed(np.empty_like(a))
    outputs[0].data[...] = a * b  # writes through .data reach the blob
    outputs[1].feed(a + b)


def _mul_add_grad(inputs, outputs):
    a, b, _prod, _sum, d_prod, d_sum = (t.data for t in inputs)
    outputs[0].feed(d_prod * b + d_sum)
    outputs[1].feed(d_prod * a + d_sum)


def _scale_by_blob(inputs, outputs, ws):
    factor = float(ws.fetch_blob("python_op_sample_factor")) if ws.has_blob("python_op_sample_factor") else 3.0
    outputs[0].feed(inputs[0].data * factor)


def _scale_by_blob_grad(inputs, outputs, ws):
    outputs[0].feed(inputs[2].data * 3.0)


TANH2 = python_op.register(_tanh2, _tanh2_grad)
MUL_ADD = python_op.register(_mul_add, _mul_add_grad)
SCALE = python_op.register(_scale_by_blob, _scale_by_blob_grad, pass_workspace=True)


def samples():
    r = np.random.default_rng(31)
    x = r.standard_normal((2, 3)).astype(np.float32)
    y = r.standard_normal((2, 3)).astype(np.float32)
    return {
        "Python": [case([x], token=TANH2), case([x], token=TANH2, inplace={0: 0}),
                   case([x, y], outputs=2, token=MUL_ADD), case([x], token=SCALE)],
    }


# the in-place case overwrites the forward input that _tanh2_grad reads (as any in-place op
# whose gradient needs its input would)
GRADIENT_OPTIONS = {"Python": {"skip_cases": [1]}}
