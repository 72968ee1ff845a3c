"""Initializers: how a parameter's init op is emitted into ``param_init_net``.

``Initializer("XavierFill")`` emits ``XavierFill([], name, shape=...)``;
``ExternalInitializer`` emits nothing (the blob comes from elsewhere, e.g. a shared model).
Builders accept Caffe2's two spellings: a ``weight_init=("MSRAFill", {})`` tuple or a
``WeightInitializer=Initializer`` class/instance.
"""

from __future__ import annotations

from nbcaffe import core
from nbcaffe.modeling.parameter_info import ParameterInfo


class Initializer:
    """Emit ``operator_name([], param, shape=shape, **operator_kwargs)`` into the init net."""

    def __init__(self, operator_name=None, **kwargs):
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def update(self, operator_name, kwargs):
        if self.operator_name is not None:
            raise Exception("Operator name overwrites are not allowed")
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def create_param(self, param_name, init_net, shape):
        param = init_net.__getattr__(self.operator_name)([], param_name, shape=shape, **self.operator_kwargs)
        return ParameterInfo(param_id=None, param=param, shape=shape)


class ExternalInitializer:
    """The parameter is initialised elsewhere; only a reference is created."""

    def create_param(self, param_name, init_net, shape):
        if isinstance(param_name, core.BlobReference):
            param = core.BlobReference(str(param_name), init_net)
        elif isinstance(param_name, str):
            param = core.ScopedBlobReference(param_name, init_net)
        else:
            raise TypeError("Unsupported type for param_name")
        return ParameterInfo(param_id=None, param=param, shape=shape)


class PseudoFP16Initializer(Initializer):
    """Caffe2's fp32-master-copy initialiser; nbcaffe trains in fp32, so this is a plain one."""


def update_initializer(initializer_class, operator_name_and_kwargs, default_operator_name_and_kwargs):
    """Resolve the (class, tuple) pair a builder received into one Initializer instance.

    Exactly one of ``initializer_class`` and ``operator_name_and_kwargs`` may be given; with
    neither, the default ``(name, kwargs)`` is used.
    """
    if initializer_class is not None:
        init = initializer_class() if isinstance(initializer_class, type) else initializer_class
        if operator_name_and_kwargs is not None:
            if not hasattr(init, "update"):
                raise ValueError("an initializer tuple cannot configure this initializer class")
            init.update(*operator_name_and_kwargs)
        return init
    name, kwargs = operator_name_and_kwargs or default_operator_name_and_kwargs
    return Initializer(name, **kwargs)
