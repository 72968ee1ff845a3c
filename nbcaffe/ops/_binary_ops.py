"""Pieces shared by the broadcasting binary ops of arithmetic.py (Add, Sub, Mul, Div) and
elementwise_math.py (Pow with a tensor exponent): the NumPy reference with Caffe2's legacy
broadcasting, and the gradient makers that refuse an in-place forward op whose overwritten
input the gradient would read."""

from __future__ import annotations

from nbcaffe.autograd import GI, GO, GradientContext, GradientError, I, O
from nbcaffe.ops._elementwise import apply_binary_reference


def refuse_overwritten(op, indices):
    """GradientError when the gradient must read forward input ``i`` (values, not only the
    shape) but the op wrote an output over it in place: the input is gone by then."""
    for i in indices:
        if i < len(op.input) and op.input[i] in op.output:
            raise GradientError(
                f"Exception when creating gradient for [{op.type}]: its gradient reads input {i}"
                f" '{op.input[i]}', which the op overwrites in place; write its output to a new blob")


def binary_gradient(grad_type, reads=(), with_output=False):
    """Maker of ``grad_type(dC, A, B[, C]) -> (dA, dB)`` (forward arguments copied).

    ``reads``: forward inputs whose values (not just shapes) the gradient needs.  When A and
    B are one blob (``Mul(X, X)``) dB gets its own name so autograd sums the two parts.
    """

    def maker(op, g_output):
        refuse_overwritten(op, reads)
        ctx = GradientContext(op, g_output)
        inputs = [GO(0), I(0), I(1)] + ([O(0)] if with_output else [])
        outputs = [GI(0), GI(1)]
        if op.input[0] == op.input[1]:
            outputs[1] = f"_{op.input[1]}_grad_input_1"
        ctx.add(grad_type, inputs, outputs)
        if op.input[0] == op.input[1]:
            ctx.alias(1, outputs[1])
        return ctx.result()

    maker.grad_op_type = grad_type
    return maker


def _binary_reference(fn):
    def reference(A, B, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        return (apply_binary_reference(fn, A, B, broadcast, axis, axis_str, order).astype(A.dtype),)

    return staticmethod(reference)
