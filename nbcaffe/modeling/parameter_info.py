"""Parameter tags and records kept by ModelHelper."""

from __future__ import annotations

import math


class ParameterTags:
    """Tags of model parameters: WEIGHT and BIAS are optimised; COMPUTED_PARAM (e.g. BN running
    statistics) are saved with the model but not optimised."""

    BIAS = "BIAS"
    WEIGHT = "WEIGHT"
    COMPUTED_PARAM = "COMPUTED_PARAM"


class ParameterInfo:
    """What a model knows about one parameter: its blob, shape, tags and optimiser."""

    def __init__(self, param_id, param, key=None, shape=None, length=None, grad=None, blob_copy=None):
        self.param_id = param_id
        self.name = str(param)
        self.blob = param
        self.key = key
        self.shape = shape
        self.size = None if shape is None else int(math.prod(shape))
        self.length = max(1, length if length is not None else 1)
        self.grad = grad
        self._cloned_init_net = None
        self.blob_copy = blob_copy
        self._optimizer = None

    @property
    def parameter(self):
        return self.blob

    @property
    def optimizer(self):
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value):
        if self._optimizer is not None:
            raise RuntimeError(f"parameter {self.name} already has an optimizer")
        self._optimizer = value

    def __str__(self):
        return self.name
