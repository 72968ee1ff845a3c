"""Net building: BlobReference, Net, CreateOperator, scopes, plans (Caffe2's ``core``; the plan
builders are in nbcaffe/plan.py).

``net.FC(["data", "w", "b"], "fc1")`` appends an ``FC`` OperatorDef to the net; any
registered op type is available as a method of :class:`Net` and of :class:`BlobReference`.
String blob names passed to builders get the current NameScope prefix; BlobReferences are
used as they are.
"""

from __future__ import annotations

import collections
import os
import sys
import traceback
import weakref

import numpy as np

from nbcaffe import errors, registry, scope
from nbcaffe.devices import CPU, CUDA, DeviceOption  # noqa: F401  (re-exported, Caffe2 names)
from nbcaffe.proto import caffe2_pb2
from nbcaffe.scope import DeviceScope, EmptyDeviceScope, NameScope  # noqa: F401
from nbcaffe.utils import DataType, MakeArgument  # noqa: F401

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _creation_site():
    """'file:line in function' of the first caller frame outside the nbcaffe package."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


_LIVE_NETS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # net name -> core.Net


def creation_sites(net_def):
    """The creation sites of ``net_def``'s ops when it is the proto of a live core.Net (same name,
    same op types), e.g. ``CreateNet(net.Proto())`` or a plan's nets; else None."""
    net = _LIVE_NETS.get(net_def.name)
    if net is None or net.Proto() is not net_def and [op.type for op in net.Proto().op] != \
            [op.type for op in net_def.op]:
        return None
    return list(net._creation_sites)


def IsOperator(op_type) -> bool:
    """Whether ``op_type`` is a registered operator type."""
    return op_type in registry.SCHEMAS


def IsOperatorWithEngine(op_type, engine) -> bool:
    return any(t == op_type and e == engine for (t, _d, e) in registry.KERNELS)


def GlobalInit(args):
    from nbcaffe import workspace

    return workspace.GlobalInit(args)


def ScopedName(name) -> str:
    """``name`` with the current NameScope prefix."""
    return scope.CurrentNameScope() + name


class BlobReference:
    """A blob name, optionally tied to the net that produces it.

    Calling an op type on it (``blob.Relu([], "y")``) adds that op to the blob's net with
    the blob as first input.
    """

    def __init__(self, name, net=None):
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        self._name = str(name)
        self._from_net = net
        self.meta = {}

    def __hash__(self):
        return hash(self._name)

    def __eq__(self, other):
        if isinstance(other, str):
            return self._name == other
        if isinstance(other, BlobReference):
            return self._name == other._name
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __str__(self):
        return self._name

    def __repr__(self):
        return f'BlobReference("{self._name}")'

    def __add__(self, other):
        if not isinstance(other, str):
            raise RuntimeError("Cannot add BlobReference to a non-string.")
        return BlobReference(self._name + other, self._from_net)

    def __radd__(self, other):
        if not isinstance(other, str):
            raise RuntimeError("Cannot add a non-string to BlobReference.")
        return BlobReference(other + self._name, self._from_net)

    def Net(self):
        return self._from_net

    def GetNameScope(self) -> str:
        return self._name[: self._name.rfind("/") + 1]

    def GetUnscopedName(self) -> str:
        return self._name[self._name.rfind("/") + 1:]

    def __getattr__(self, op_type):
        if op_type.startswith("__") or op_type in ("_name", "_from_net", "meta"):
            raise AttributeError(op_type)
        if self._from_net is None:
            raise AttributeError(
                f"You cannot use a blob reference that does not have a net source to create operators:"
                f" '{self._name}'.{op_type} (create it with net.X(...) or BlobReference(name, net)).")
        if not IsOperator(op_type):
            raise AttributeError(
                f"Method {op_type} is not a registered operator.{errors.did_you_mean(op_type, registry.SCHEMAS)}")

        def create(inputs=None, *args, **kwargs):
            rest = _RectifyInputOutput(inputs) if inputs is not None else []
            return self._from_net._CreateAndAddToSelf(op_type, [self] + rest, *args, **kwargs)

        create.__name__ = op_type
        create.__doc__ = registry.SCHEMAS[op_type].doc
        return create


def ScopedBlobReference(name, *args, **kwargs):
    """A BlobReference named ``<current NameScope>name``."""
    return BlobReference(scope.CurrentNameScope() + name, *args, **kwargs)


def _RectifyInputOutput(blobs, net=None):
    """Turn a name, BlobReference or list of them into a list of BlobReferences
    (strings get the current NameScope)."""
    if isinstance(blobs, (str, bytes)):
        return [ScopedBlobReference(blobs.decode() if isinstance(blobs, bytes) else blobs, net=net)]
    if isinstance(blobs, BlobReference):
        return [blobs]
    if isinstance(blobs, (list, tuple)):
        rectified = []
        for blob in blobs:
            if isinstance(blob, (str, bytes)):
                rectified.append(ScopedBlobReference(blob.decode() if isinstance(blob, bytes) else blob, net=net))
            elif isinstance(blob, BlobReference):
                rectified.append(blob)
            else:
                raise TypeError(
                    f"I/O blob #{len(rectified)} of unsupported type: {blob!r} of type {type(blob).__name__}")
        return rectified
    raise TypeError(f"Unknown input/output type: {blobs!r} of type {type(blobs).__name__}")


def CreateOperator(operator_type, inputs, outputs, name="", control_input=None, device_option=None,
                   arg=None, engine=None, debug_info=None, **kwargs):
    """Build an ``OperatorDef``.

    Args:
        operator_type: e.g. ``"Relu"``.
        inputs, outputs: a blob name / BlobReference or a list of them (used verbatim; no
            NameScope is applied here, as in Caffe2).
        name: optional op name.
        device_option: defaults to the current DeviceScope.
        arg: extra ``Argument`` protos.
        engine: preferred engine(s), comma separated.
        **kwargs: arguments, converted by :func:`nbcaffe.utils.MakeArgument`
            (``random_seed`` goes into the DeviceOption instead).

    Example:
        >>> op = CreateOperator("Relu", ["X"], ["Y"])
        >>> op.type, list(op.input), list(op.output)
        ('Relu', ['X'], ['Y'])
    """
    op = caffe2_pb2.OperatorDef()
    op.type = operator_type
    op.name = name
    if isinstance(inputs, (str, bytes, BlobReference)):
        inputs = [inputs]
    if isinstance(outputs, (str, bytes, BlobReference)):
        outputs = [outputs]
    op.input.extend(_text(i) for i in inputs)
    op.output.extend(_text(o) for o in outputs)
    if control_input:
        control_input = [control_input] if isinstance(control_input, (str, BlobReference)) else control_input
        op.control_input.extend(_text(c) for c in control_input)
    if device_option is not None:
        op.device_option.CopyFrom(device_option)
    elif scope.CurrentDeviceScope() is not None:
        op.device_option.CopyFrom(scope.CurrentDeviceScope())
    if engine is not None:
        op.engine = engine
    if debug_info is not None:
        op.debug_info = debug_info
    elif os.environ.get("CAFFE2_DEBUG") or os.environ.get("NBCAFFE_DEBUG"):
        op.debug_info = "".join(traceback.format_stack()[:-1])  # Caffe2's creation traceback
    if "random_seed" in kwargs:
        op.device_option.random_seed = int(kwargs.pop("random_seed"))
    if arg is not None:
        op.arg.extend(arg)
    for key, value in kwargs.items():
        if value is None:
            continue  # Caffe2 builders pass optional arguments as None: leave them unset
        op.arg.append(MakeArgument(key, value))
    from nbcaffe import workspace

    if getattr(workspace, "IsImmediate", None) is not None and workspace.IsImmediate():
        workspace.RunOperatorImmediate(op)
    return op


def CreatePythonOperator(f, inputs, outputs, grad_f=None, pass_workspace=False, python_func_type=None, *args,
                         **kwargs):
    """An OperatorDef of type ``Python`` running ``f(inputs, outputs)`` (see nbcaffe.ops.python_op);
    the function is registered in this process and the op refers to it by its ``token``."""
    from nbcaffe.ops import python_op

    if python_func_type is not None:
        func = python_func_type(f)
        f, grad_f = func.forward, func.backward
    kwargs["token"] = python_op.register(f, grad_f, pass_workspace)
    return CreateOperator("Python", inputs, outputs, *args, **kwargs)


def _text(blob) -> str:
    return blob.decode("utf-8") if isinstance(blob, bytes) else str(blob)


class Net:
    """A NetDef under construction (Caffe2's ``core.Net``).

    ``Net("train")`` starts an empty net; ``Net(net_def)`` wraps a copy of a NetDef.  Net
    names are unique in a process: a second ``Net("train")`` is named ``train_1``.

    Example:
        >>> net = Net("example")
        >>> y = net.Relu("x", "y")
        >>> [op.type for op in net.Proto().op], list(net.Proto().external_input)
        (['Relu'], ['x'])
    """

    _net_names_used: set = set()

    @staticmethod
    def _get_next_net_name(basename):
        basename = "/".join(x for x in str(basename).split("/") if x and x not in (".", ".."))
        name = basename
        index = 1
        while name in Net._net_names_used:
            name = f"{basename}_{index}"
            index += 1
        Net._net_names_used.add(name)
        return name

    def __init__(self, name_or_proto, inplace=False):
        self._external_input_map = set()
        self._op_outputs = set()
        self._creation_sites = []
        self._attr_dict = collections.defaultdict(list)
        if isinstance(name_or_proto, caffe2_pb2.NetDef):
            self._net = caffe2_pb2.NetDef()
            self._net.CopyFrom(name_or_proto)
            self._external_input_map.update(self._net.external_input)
            for op in self._net.op:
                self._op_outputs.update(op.output)
            self._creation_sites = [None] * len(self._net.op)
            prefix = self._net.name + "_blob_"
            indices = []
            for op in self._net.op:
                for blob in list(op.input) + list(op.output):
                    if blob.startswith(prefix) and blob[len(prefix):].isdigit():
                        indices.append(int(blob[len(prefix):]))
            self._next_name_index = max(indices) + 1 if indices else 0
            name = self._net.name
        else:
            self._net = caffe2_pb2.NetDef()
            self._next_name_index = 0
            name = name_or_proto
        self._net.name = Net._get_next_net_name(name)
        _LIVE_NETS[self._net.name] = self

    # ------------------------------------------------------------------ naming
    def Name(self) -> str:
        return self._net.name

    def __str__(self):
        return self.Name()

    def __repr__(self):
        return f"Net({self.Name()!r}, {len(self._net.op)} ops)"

    def Proto(self) -> caffe2_pb2.NetDef:
        """The NetDef being built (mutable; print it for the text format)."""
        return self._net

    def BlobIsDefined(self, blob) -> bool:
        name = str(blob)
        return name in self._op_outputs or name in self._external_input_map

    def UsesBlob(self, blob) -> bool:
        name = str(blob)
        return any(name in op.input or name in op.output for op in self._net.op) or \
            name in self._external_input_map

    def GetBlobRef(self, blob_name):
        blob_name = str(blob_name)
        if not self.BlobIsDefined(blob_name):
            raise KeyError(f"Net does not define blob {blob_name}")
        return BlobReference(blob_name, self)

    def NextName(self, prefix=None, output_id=None) -> str:
        """A fresh blob name: ``<net>/<prefix>`` (then ``_2``, ``_3``, ...) or ``<net>_blob_<k>``."""
        if prefix:
            base = self._net.name + "/" + prefix
            name = base + (f":{output_id}" if output_id is not None else "")
            index = 2
            while self.BlobIsDefined(scope.CurrentNameScope() + name):
                name = f"{base}_{index}" + (f":{output_id}" if output_id is not None else "")
                index += 1
        else:
            name = f"{self._net.name}_blob_{self._next_name_index}"
            self._next_name_index += 1
        return name

    def NextBlob(self, prefix=None):
        """A BlobReference with a name not yet used in this net (no NameScope)."""
        name = prefix or "unnamed"
        output = name
        index = 2
        while self.BlobIsDefined(output):
            output = f"{name}_{index}"
            index += 1
        return BlobReference(output, self)

    def NextScopedBlob(self, prefix=None):
        return self.NextBlob(scope.CurrentNameScope() + (prefix or "unnamed"))

    # ------------------------------------------------------------------ external I/O
    def AddExternalInput(self, *inputs):
        """Declare blobs the net reads but does not produce; returns their references."""
        assert len(inputs) > 0
        refs = []
        for blob in inputs:
            name = str(blob)
            if name in self._external_input_map:
                raise errors.SchemaError(f"Net '{self.Name()}' already contains an input named {name}")
        for blob in inputs:
            name = str(blob)
            self._net.external_input.append(name)
            self._external_input_map.add(name)
            refs.append(BlobReference(name, self))
        return refs[0] if len(refs) == 1 else refs

    def AddExternalInputs(self, *inputs):
        return self.AddExternalInput(*inputs)

    def AddExternalOutput(self, *outputs):
        for blob in outputs:
            name = str(blob)
            if name in self._net.external_output:
                raise errors.SchemaError(f"Net '{self.Name()}' already has an external output {name}")
            self._net.external_output.append(name)
        return outputs[0] if len(outputs) == 1 else outputs

    def AddExternalOutputs(self, *outputs):
        return self.AddExternalOutput(*outputs)

    def AddScopedExternalInputs(self, *inputs):
        refs = self.AddExternalInput(*[ScopedName(str(i)) for i in inputs])
        return refs if isinstance(refs, list) else [refs]

    def AddScopedExternalOutputs(self, *outputs):
        return self.AddExternalOutput(*[ScopedName(str(o)) for o in outputs])

    @property
    def external_inputs(self):
        return [BlobReference(name, self) for name in self._net.external_input]

    @property
    def external_outputs(self):
        return [BlobReference(name, self) for name in self._net.external_output]

    # ------------------------------------------------------------------ ops
    def __getattr__(self, op_type):
        if op_type.startswith("__") or op_type.startswith("_"):
            raise AttributeError(op_type)
        if not IsOperator(op_type):
            raise AttributeError(
                f"Method {op_type} is not a registered operator.{errors.did_you_mean(op_type, registry.SCHEMAS)}")

        def create(*args, **kwargs):
            return self._CreateAndAddToSelf(op_type, *args, **kwargs)

        create.__name__ = create.__qualname__ = op_type
        create.__doc__ = registry.SCHEMAS[op_type].doc
        return create

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(registry.SCHEMAS))

    def Python(self, f, grad_f=None, python_func_type=None, pass_workspace=False, grad_output_indices=None,
               grad_input_indices=None):
        """``net.Python(f, grad_f)(inputs, outputs, **kwargs)`` adds an op running the Python
        function ``f(inputs, outputs)`` on TensorCPU wrappers (see nbcaffe.ops.python_op)."""
        from nbcaffe.ops import python_op

        return python_op.net_python(self, f, grad_f, python_func_type, pass_workspace, grad_output_indices,
                                    grad_input_indices)

    def _CreateAndAddToSelf(self, op_type, inputs, outputs=None, **kwargs):
        inputs = _RectifyInputOutput(inputs)
        for blob in inputs:
            if not self.BlobIsDefined(blob):
                self.AddExternalInput(blob)
        if outputs is None:
            outputs = self.NextName(prefix=op_type)
        elif isinstance(outputs, int):
            outputs = [self.NextName(prefix=op_type, output_id=i) for i in range(outputs)]
        outputs = _RectifyInputOutput(outputs, net=self)
        op = CreateOperator(op_type, inputs, outputs, **kwargs)
        self._ExtendOps([op], site=_creation_site())
        if len(op.output) == 0:
            return None
        if len(op.output) == 1:
            return BlobReference(op.output[0], self)
        return tuple(BlobReference(o, self) for o in op.output)

    def _ExtendOps(self, new_ops, site=None):
        self._net.op.extend(new_ops)
        for op in new_ops:
            self._op_outputs.update(op.output)
            self._creation_sites.append(site)

    def AppendNet(self, net):
        """Append another net's ops and external I/O to this one."""
        other = net.Proto() if isinstance(net, Net) else net
        sites = list(net._creation_sites) if isinstance(net, Net) else [None] * len(other.op)
        self._net.op.extend(other.op)
        for op, site in zip(other.op, sites + [None] * (len(other.op) - len(sites))):
            self._op_outputs.update(op.output)
            self._creation_sites.append(site)
        for blob in other.external_input:
            if not self.BlobIsDefined(blob):
                self.AddExternalInput(blob)
        for blob in other.external_output:
            if blob not in self._net.external_output:
                self.AddExternalOutput(blob)
        return self

    def Const(self, array, blob_out=None, dtype=None):
        """Add a fill op holding constant ``array`` (GivenTensor*Fill by dtype; floats become
        float32 as in Caffe2)."""
        if isinstance(array, bool):
            return self.ConstantFill([], blob_out or 1, dtype=DataType.BOOL, value=array)
        array = np.array(array) if dtype is None else np.array(array, dtype=dtype)
        shape = list(array.shape)
        values = array.reshape(-1)
        if array.dtype == np.int32:
            op = self.GivenTensorIntFill
        elif array.dtype == np.int64:
            op = self.GivenTensorInt64Fill
        elif array.dtype.kind in "SUO":
            op = self.GivenTensorStringFill
        elif array.dtype == np.bool_:
            op = self.GivenTensorBoolFill
        else:
            op = self.GivenTensorFill
        return op([], blob_out or 1, shape=shape, values=values)

    def Clone(self, name, blob_remap=None, op_id_mask=None, remap_funcs=None, keep_schema=True,
              update_external_list=False):
        """A copy of this net named ``name``, with blobs renamed by ``blob_remap`` and only the
        ops whose indices are in ``op_id_mask`` (all by default)."""
        blob_remap = {str(k): str(v) for k, v in (blob_remap or {}).items()}
        proto = caffe2_pb2.NetDef()
        proto.CopyFrom(self._net)
        del proto.op[:]
        del proto.external_input[:]
        del proto.external_output[:]
        keep = range(len(self._net.op)) if op_id_mask is None else op_id_mask
        new_sites = []
        for index in keep:
            op = caffe2_pb2.OperatorDef()
            op.CopyFrom(self._net.op[index])
            for field in (op.input, op.output, op.control_input):
                field[:] = [blob_remap.get(b, b) for b in field]
            if remap_funcs and op.type in remap_funcs:
                remap_funcs[op.type](op, self._net.name, name, blob_remap)
            proto.op.append(op)
            new_sites.append(self._creation_sites[index] if index < len(self._creation_sites) else None)
        proto.external_input.extend(blob_remap.get(b, b) for b in self._net.external_input)
        proto.external_output.extend(blob_remap.get(b, b) for b in self._net.external_output)
        proto.name = name
        clone = Net(proto)
        clone._creation_sites = new_sites
        return clone

    def AddGradientOperators(self, ys, skip=0):
        """Append the gradient ops of this net's ops (after the first ``skip``) for ``ys``.

        Args:
            ys: blob(s) to differentiate — seeded with ones through ``ConstantFill`` into
                ``<y>_autogen_grad`` — or a dict {blob: seed blob} to supply the seeds.
            skip: leave the first ``skip`` ops (e.g. data loading) out of the backward pass.

        Returns:
            {blob: gradient blob} for every blob that receives a gradient (``X_grad``).
        """
        from nbcaffe import autograd

        grad_ops, input_to_grad = autograd.GradientRegistry.GetBackwardPass(self._net.op[skip:], ys)
        self._ExtendOps(grad_ops, site=_creation_site())
        return {BlobReference(k, self): BlobReference(v, self) for k, v in input_to_grad.items()}

    def RunAllOnGPU(self, gpu_id=0, use_cudnn=False):
        """Make every op without its own device option run on CUDA device ``gpu_id``."""
        self._net.device_option.CopyFrom(DeviceOption(CUDA, gpu_id))
        if use_cudnn:
            for op in self._net.op:
                op.engine = "CUDNN"

    def RunAllOnCPU(self):
        self._net.device_option.CopyFrom(DeviceOption(CPU))

    def set_rand_seed(self, seed=100, sequence_seed=True, seed_on_op_def=False):
        """Give every op a random_seed (distinct per op when ``sequence_seed``)."""
        for index, op in enumerate(self._net.op):
            op.device_option.random_seed = seed + index if sequence_seed else seed


# Plans (ExecutionStep, execution_step, Plan) live in nbcaffe.plan; re-exported here under
# Caffe2's names.  Imported at the bottom because they test isinstance(x, Net).
from nbcaffe.plan import ExecutionStep, Plan, execution_step  # noqa: E402


def __getattr__(name):
    # GradientRegistry lives in nbcaffe.autograd; core re-exports it lazily (autograd imports
    # the registry, which ops import, so a module-level import here would be circular).
    if name in ("GradientRegistry", "GradientError"):
        from nbcaffe import autograd

        return getattr(autograd, name)
    raise AttributeError(f"module 'nbcaffe.core' has no attribute '{name}'")


__all__ = ["BlobReference", "Net", "CreateOperator", "DeviceOption", "DeviceScope", "NameScope",
           "ScopedName", "ScopedBlobReference", "IsOperator", "ExecutionStep", "Plan", "execution_step",
           "DataType", "CPU", "CUDA", "GlobalInit"]
