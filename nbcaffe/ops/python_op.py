"""Python operators: ops whose body is a Python function (Caffe2's ``Python``/``PythonGradient``).

``net.Python(f, grad_f=None, pass_workspace=False)(inputs, outputs, **kwargs)`` registers ``f``
(and ``grad_f``) in this process under a *token* and adds a ``Python`` op whose ``token``
argument names it, exactly as Caffe2 did; so a NetDef holding Python ops runs only in the
process that registered the functions (the token is not the code).  ``f(inputs, outputs)``
(``f(inputs, outputs, workspace)`` with ``pass_workspace``) receives :class:`TensorCPU`
wrappers: ``.data`` is the NumPy array itself (writes go to the blob), ``.shape``,
``.reshape(shape)`` resizes (Caffe2's Resize: same dtype, float32 for a new tensor), and
``.feed(array)`` stores a copy of an array.  Outputs start empty on every run (an in-place
output starts as its input's array); each must be written.

The gradient op is ``PythonGradient``: ``grad_f(inputs, outputs)`` gets the wrappers of
``[forward inputs..., forward outputs..., output gradients...]`` and must write the input
gradients (``grad_output_indices`` / ``grad_input_indices`` pick subsets, as in Caffe2).

On a CUDA device option the op copies its inputs to the host, runs the function there and
copies the outputs back (the mirror module registers that host-copy path).  An exception in
the function becomes a PythonOperatorError naming the op, the function (and where it is
defined) and the original exception, which stays chained for the traceback.
"""

from __future__ import annotations

import itertools

import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GradientContext, GradientError
from nbcaffe.devices import CPU, CUDA
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg
from nbcaffe.shape_inference import UnknownShape

# ------------------------------------------------------------------------ the function registry


class PythonFunction:
    """What a token stands for: the forward function, its gradient and the calling convention."""

    __slots__ = ("f", "grad_f", "pass_workspace")

    def __init__(self, f, grad_f, pass_workspace):
        self.f = f
        self.grad_f = grad_f
        self.pass_workspace = pass_workspace


_FUNCTIONS: dict[str, PythonFunction] = {}
_COUNTER = itertools.count()


def _describe(fn) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    code = getattr(fn, "__code__", None)
    if code is not None:
        return f"{name} (defined at {code.co_filename}:{code.co_firstlineno})"
    return name


def register(f, grad_f=None, pass_workspace=False) -> str:
    """Register ``f`` (and ``grad_f``) for Python ops; returns the token to pass as ``token``."""
    if not callable(f):
        raise TypeError(f"a Python op needs a callable, got {type(f).__name__}")
    if grad_f is not None and not callable(grad_f):
        raise TypeError(f"grad_f must be callable, got {type(grad_f).__name__}")
    token = f"{next(_COUNTER)}:{getattr(f, '__qualname__', type(f).__name__)}"
    _FUNCTIONS[token] = PythonFunction(f, grad_f, bool(pass_workspace))
    return token


def register_gradient(token, grad_f):
    """Attach (or replace) the gradient function of a registered token."""
    lookup(token, "Python").grad_f = grad_f


def lookup(token, op_type) -> PythonFunction:
    record = _FUNCTIONS.get(token)
    if record is None:
        raise errors.SchemaError(
            f"{op_type} op token {token!r} names no function registered in this process. Python ops refer to"
            f" functions registered by net.Python(...) / core.CreatePythonOperator(...) in the running process"
            f" (as in Caffe2): a NetDef saved with Python ops does not carry their code, so rebuild those ops"
            f" where the net is loaded.")
    return record


# ------------------------------------------------------------------------ tensor wrappers


class TensorCPU:
    """A blob as a Python op's function sees it (Caffe2's ``TensorCPU`` wrapper)."""

    def __init__(self, name, array=None):
        self.name = name
        self._array = array

    @property
    def data(self):
        """The NumPy array itself (writing into it writes the blob); a new tensor is float32 (0,)."""
        if self._array is None:
            self._array = np.empty((0,), np.float32)
        return self._array

    @property
    def shape(self) -> tuple:
        return tuple(self._array.shape) if self._array is not None else (0,)

    @property
    def _shape(self):
        return list(self.shape)

    def reshape(self, shape):
        """Resize to ``shape`` (Caffe2's Resize): a view when the size is unchanged, otherwise a
        new uninitialised array of the same dtype (float32 for a tensor never written)."""
        shape = tuple(int(d) for d in shape)
        current = self._array
        if current is not None and current.size == int(np.prod(shape)):
            self._array = current.reshape(shape)
        else:
            dtype = current.dtype if current is not None else np.float32
            self._array = np.empty(shape, dtype)

    _reshape = reshape

    def feed(self, value):
        """Store a C-contiguous copy of ``value`` (any array-like) as this tensor."""
        self._array = np.array(value, copy=True, order="C")
        return True

    def fetch(self):
        """A copy of the data."""
        return self.data.copy()

    def init(self, dims, caffe_type):
        from nbcaffe import utils

        self._array = np.empty(tuple(int(d) for d in dims), utils.dtype_of(caffe_type))

    def __repr__(self):
        return f"TensorCPU({self.name!r}, shape={self.shape})"


# ------------------------------------------------------------------------ the ops


def host_path(*args):
    """Kernel placeholder (CPU and CUDA): the op itself runs the function on host arrays
    (PythonBase._prepare_and_run), copying device inputs and outputs on a CUDA device option."""
    raise errors.RegistryError("Python ops run their function from the op, not through a kernel")


class AnyPair(dict):
    """An in-place rule allowing every (input, output) pair: empty as a dict (the registry's
    record), and callable, which is how Operator asks about a pair."""

    def __call__(self, i, j):
        return True


class PythonBase(Operator):
    """Shared machinery of Python and PythonGradient."""

    num_inputs = (0, None)
    num_outputs = (0, None)
    inplace = AnyPair()  # Caffe2: any input may share a blob with any output
    strict_args = False  # extra keyword arguments of net.Python(...) are stored on the op
    args = {
        "token": Arg("str", "", "the registered function (set by net.Python / CreatePythonOperator)"),
        "grad_output_indices": Arg("ints", (), "output gradients passed to grad_f (default: all)"),
        "grad_input_indices": Arg("ints", (), "input gradients grad_f writes (default: all)"),
    }
    values_dependent = True
    devices = (CPU, CUDA)
    cpu = staticmethod(host_path)

    def setup(self):
        token = self.args["token"]
        if not token:
            builder = any(a.name == "pickled_builder" for a in self.op_def.arg)
            raise errors.ArgumentError(
                f"{self.where()}: no 'token' argument" + (
                    "; nbcaffe does not unpickle function builders from NetDefs (pickled_builder): register the"
                    " function with net.Python(f) in this process" if builder else
                    "; build Python ops with net.Python(f)(inputs, outputs) or core.CreatePythonOperator"))
        self.record = lookup(token, self.type)

    @staticmethod
    def infer(args, shapes, dtypes):
        raise UnknownShape("a Python op's output shapes are whatever its function writes")

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        raise UnknownShape("a Python op's output shapes are whatever its function writes")

    def function(self):
        raise NotImplementedError

    def reference_kwargs(self):
        return {"token": self.args["token"], "num_outputs": len(self.output_names)}

    def _prepare_and_run(self):
        inputs = self.fetch_inputs()
        on_device = self.ctx.device_type != CPU
        host_inputs = [x.copy_to_host() if on_device else x for x in inputs]
        in_tensors = [TensorCPU(n, x) for n, x in zip(self.input_names, host_inputs)]
        out_tensors = []
        for name in self.output_names:
            # outputs start empty on every run, except in place, where they start as the input's array
            start = host_inputs[self.input_names.index(name)] if name in self.input_names else None
            out_tensors.append(TensorCPU(name, start))
        fn = self.function()
        try:
            if self.record.pass_workspace:
                fn(in_tensors, out_tensors, self.ws)
            else:
                fn(in_tensors, out_tensors)
        except Exception as exc:
            raise errors.PythonOperatorError(
                f"its Python function {_describe(fn)} raised {type(exc).__name__}: {exc}") from exc
        for j, tensor in enumerate(out_tensors):
            if tensor._array is None:
                raise errors.OperatorError(
                    f"output {j} '{tensor.name}' was never written by {_describe(fn)}: call outputs[{j}].feed(array),"
                    f" or outputs[{j}].reshape(shape) and fill outputs[{j}].data")
            value = tensor._array
            self.blobs[tensor.name] = self.ctx.from_host(value) if on_device else value


def _run_reference(fn, pass_workspace, inputs, num_outputs):
    from nbcaffe import workspace

    ins = [TensorCPU(f"in{i}", np.array(x, copy=True)) for i, x in enumerate(inputs)]
    outs = [TensorCPU(f"out{j}") for j in range(num_outputs)]
    if pass_workspace:
        fn(ins, outs, workspace.Workspace("_python_op_reference_"))
    else:
        fn(ins, outs)
    return tuple(t.data for t in outs)


def python_gradient_maker(op, g_output):
    """Caffe2's rule: PythonGradient(inputs..., outputs..., output gradients...) -> input gradients."""
    ctx = GradientContext(op, g_output)
    args = {a.name: a for a in op.arg}
    go_idx = list(args["grad_output_indices"].ints) if "grad_output_indices" in args else []
    gi_idx = list(args["grad_input_indices"].ints) if "grad_input_indices" in args else []
    go_idx = go_idx or list(range(len(op.output)))
    gi_idx = gi_idx or list(range(len(op.input)))
    for i in go_idx:
        if not ctx.has_GO(i):
            raise GradientError(
                f"Python op: no gradient flows into output {i} ('{op.output[i]}'), but its grad_f expects one;"
                f" pass grad_output_indices to net.Python to list the outputs that have gradients")
    inputs = list(op.input) + list(op.output) + [ctx.GO(i) for i in go_idx]
    ctx.add("PythonGradient", inputs, [ctx.GI(i) for i in gi_idx])
    return ctx.result()


python_gradient_maker.grad_op_type = "PythonGradient"


@register_op
class Python(PythonBase):
    """outputs = f(inputs): runs the Python function registered under ``token``.

    ``f(inputs, outputs)`` (or ``f(inputs, outputs, workspace)`` when registered with
    ``pass_workspace``) gets TensorCPU wrappers (``.data``, ``.shape``, ``.reshape``, ``.feed``)
    and must write every output.  Any number of inputs and outputs; any pair may run in place.
    CPU, and CUDA through host copies.  Gradient: PythonGradient with the registered ``grad_f``.
    Output shapes are unknown to static shape inference.
    """

    inputs, outputs = ("inputs",), ("outputs",)
    gradient = staticmethod(python_gradient_maker)

    def function(self):
        return self.record.f

    @staticmethod
    def reference(*inputs, token="", num_outputs=0):
        record = lookup(token, "Python")
        return _run_reference(record.f, record.pass_workspace, inputs, num_outputs)


@register_op
class PythonGradient(PythonBase):
    """input gradients = grad_f(inputs, outputs, output gradients) for the Python op's ``token``.

    grad_f gets wrappers of [forward inputs..., forward outputs..., output gradients...] and
    writes the input gradients listed by ``grad_input_indices`` (all by default).
    """

    inputs, outputs = ("inputs_outputs_and_output_gradients",), ("input_gradients",)
    gradient = None

    def setup(self):
        super().setup()
        if self.record.grad_f is None:
            raise errors.SchemaError(
                f"{self.where()}: the Python function {_describe(self.record.f)} was registered without grad_f;"
                f" pass grad_f to net.Python to differentiate it")

    def function(self):
        return self.record.grad_f

    @staticmethod
    def reference(*inputs, token="", num_outputs=0):
        record = lookup(token, "PythonGradient")
        return _run_reference(record.grad_f, record.pass_workspace, inputs, num_outputs)


def net_python(net, f, grad_f=None, python_func_type=None, pass_workspace=False, grad_output_indices=None,
               grad_input_indices=None):
    """What ``core.Net.Python`` returns: a builder ``(inputs, outputs, **kwargs) -> outputs``."""
    if python_func_type is not None:  # Caffe2: a class with forward/backward built from f
        func = python_func_type(f)
        f, grad_f = func.forward, func.backward
    token = register(f, grad_f, pass_workspace)
    fixed = {"token": token}
    if grad_output_indices:
        fixed["grad_output_indices"] = list(grad_output_indices)
    if grad_input_indices:
        fixed["grad_input_indices"] = list(grad_input_indices)

    def build(inputs, outputs=None, **kwargs):
        return net._CreateAndAddToSelf("Python", inputs, outputs, **kwargs, **fixed)

    build.__name__ = "Python"
    build.token = token
    return build
