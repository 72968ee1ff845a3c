"""The operator registry: plain dictionaries filled at import time.

* ``SCHEMAS[type]`` -> :class:`OpSchema` (built from the op class's attributes)
* ``KERNELS[(type, device_type, engine)]`` -> kernel (engine '' is the default;
  'REFERENCE' runs the NumPy reference)
* ``GRADIENTS[type]`` -> gradient maker, or None for ops without a gradient

This module never imports ``nbcaffe.ops`` or ``nbcaffe.cuda``; they import it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from nbcaffe import errors, schema
from nbcaffe.devices import CPU, CUDA, DEVICE_NAMES

REFERENCE_ENGINE = "REFERENCE"
NOT_YET = NotImplemented  # gradient slot of an op whose gradient maker is not written yet


@dataclasses.dataclass
class OpSchema:
    """What the registry knows about one op type (read by the runner, docs and tests)."""

    type: str
    op_class: type
    inputs: tuple
    outputs: tuple
    min_inputs: int
    max_inputs: float  # math.inf for variadic ops
    min_outputs: int
    max_outputs: float
    inplace: dict
    enforce_inplace: dict
    args: dict
    doc: str
    reference: Callable
    gradient: Any
    devices: tuple
    alias_of: str = ""

    @property
    def has_gradient(self) -> bool:
        return self.gradient is not None and self.gradient is not NOT_YET


SCHEMAS: dict[str, OpSchema] = {}
KERNELS: dict[tuple, Any] = {}
GRADIENTS: dict[str, Any] = {}


def _arity(declared, names, what, cls):
    if declared is None:
        return len(names), len(names)
    if isinstance(declared, int):
        return declared, declared
    lo, hi = declared
    return lo, (float("inf") if hi is None else hi)


def register_op(cls=None, *, aliases=()):
    """Class decorator: read the op's schema from its attributes and register it.

    Refuses a class without a docstring or a NumPy ``reference``; registers the CPU kernel
    (``cls.cpu`` or ``cls.build_cpu_kernel()``) under (type, CPU, '') unless the op is
    declared device-only, and the reference under (type, CPU, 'REFERENCE').
    """

    def add(cls):
        op_type = getattr(cls, "op_type", None) or cls.__name__
        cls.op_type = op_type
        doc = inspect.getdoc(cls)
        if not doc or doc == inspect.getdoc(cls.__mro__[1]):
            raise errors.RegistryError(f"{op_type}: an op class needs its own docstring (formula first)")
        reference = getattr(cls, "reference", None)
        if reference is None:
            raise errors.RegistryError(f"{op_type}: every op needs a NumPy reference")
        args = {name: schema.as_arg(value) for name, value in cls.args.items()}
        cls.declared_args = args
        min_in, max_in = _arity(cls.num_inputs, cls.inputs, "inputs", cls)
        min_out, max_out = _arity(cls.num_outputs, cls.outputs, "outputs", cls)
        devices = tuple(cls.devices)
        record = OpSchema(
            type=op_type, op_class=cls, inputs=tuple(cls.inputs), outputs=tuple(cls.outputs),
            min_inputs=min_in, max_inputs=max_in, min_outputs=min_out, max_outputs=max_out,
            inplace=dict(cls.inplace), enforce_inplace=dict(cls.enforce_inplace), args=args,
            doc=doc, reference=reference, gradient=cls.gradient, devices=devices)
        names = (op_type,) + tuple(aliases)
        for name in names:
            if name in SCHEMAS:
                raise errors.RegistryError(f"{name}: registered twice")
        for name in names:
            SCHEMAS[name] = dataclasses.replace(record, type=name, alias_of=op_type if name != op_type else "")
            GRADIENTS[name] = cls.gradient
        if CPU in devices:
            kernel = cls.build_cpu_kernel()
            for name in names:
                KERNELS[(name, CPU, "")] = kernel
        for name in names:
            KERNELS[(name, CPU, REFERENCE_ENGINE)] = REFERENCE_ENGINE
        return cls

    return add(cls) if cls is not None else add


def register_kernel(op_type: str, device: int, engine: str = ""):
    """Decorator/function: register ``fn`` as the kernel of ``op_type`` on ``device``."""

    def add(fn):
        if op_type not in SCHEMAS:
            raise errors.RegistryError(f"{op_type}: kernel registered before its schema")
        key = (op_type, device, engine)
        if key in KERNELS:
            raise errors.RegistryError(f"{key}: registered twice")
        KERNELS[key] = fn
        alias_names = [name for name, rec in SCHEMAS.items() if rec.alias_of == op_type]
        for alias in alias_names:
            KERNELS.setdefault((alias, device, engine), fn)
        return fn

    return add


def devices_with(op_type: str) -> list[str]:
    """Names of the devices that have a kernel for ``op_type`` (CUDA only once loaded)."""
    found = sorted({device for (t, device, engine) in KERNELS if t == op_type and engine != REFERENCE_ENGINE})
    return [DEVICE_NAMES.get(d, str(d)) for d in found]


def engines_for(op_type: str, device: int) -> list[str]:
    """Engines registered for an op on a device ('' is the default)."""
    return sorted(engine for (t, d, engine) in KERNELS if t == op_type and d == device)


def is_registered(op_type: str) -> bool:
    return op_type in SCHEMAS


def get_schema(op_type: str) -> OpSchema:
    """The schema of ``op_type``; UnsupportedOperatorError with close names otherwise."""
    try:
        return SCHEMAS[op_type]
    except KeyError:
        raise errors.UnsupportedOperatorError(
            f"Operator type '{op_type}' is not registered.{errors.did_you_mean(op_type, SCHEMAS)}") from None


__all__ = ["SCHEMAS", "KERNELS", "GRADIENTS", "OpSchema", "register_op", "register_kernel",
           "devices_with", "engines_for", "get_schema", "CPU", "CUDA", "REFERENCE_ENGINE"]
