"""ModelHelper: a model as two nets, ``param_init_net`` (creates parameters) and ``net``
(computes), plus the list of parameters and their gradients (Caffe2's ``model_helper``)."""

from __future__ import annotations

import logging

from nbcaffe import core, errors, scope
from nbcaffe.modeling import initializers
from nbcaffe.modeling.parameter_info import ParameterTags

log = logging.getLogger("nbcaffe")

# Ops a model may call directly (model.Softmax(...)) without a warning; anything else still
# works but is logged once, as Caffe2 did, because builders in brew are the intended path.
KNOWN_WORKING_OPS = frozenset({
    "Accuracy", "Adam", "Add", "Adagrad", "AveragedLoss", "Cast", "Checkpoint", "ConstantFill", "Copy",
    "CopyGPUToCPU", "CopyCPUToGPU", "DequeueBlobs", "EnsureCPUOutput", "ExpandDims", "Flatten",
    "FlattenToVec", "LabelCrossEntropy", "LearningRate", "MakeTwoClass", "MatMul", "NHWC2NCHW", "Print",
    "PRelu", "ReduceFrontSum", "Scale", "ScatterWeightedSum", "Sigmoid", "Softmax", "SoftmaxWithLoss",
    "SquaredL2Distance", "Squeeze", "StopGradient", "Summarize", "Tanh", "Transpose", "WeightedSum",
    "Relu", "Sum", "Mul", "Sub", "Div", "Reshape", "Iter", "GaussianFill", "UniformFill", "XavierFill",
    "MSRAFill", "GivenTensorFill", "CrossEntropy", "Exp", "Log", "Sqr", "Sqrt", "Clip", "Pow", "Abs",
})
_warned = set()


class ModelHelper:
    """A trainable model: ``param_init_net`` + ``net`` + parameter bookkeeping.

    Args:
        name: model and net name (the init net is ``<name>_init``).
        init_params: when False, builders reference parameters without emitting init ops
            (test/deploy models that share parameters with a training model).
        param_model: share parameters (and their init net) with this model.
        arg_scope: defaults passed to every brew helper (default order NCHW, use_cudnn
            True, cudnn_exhaustive_search False).

    Example:
        >>> from nbcaffe import brew
        >>> m = ModelHelper(name="doc_example")
        >>> y = brew.fc(m, "data", "fc1", dim_in=4, dim_out=2)
        >>> [str(p) for p in m.params]
        ['fc1_w', 'fc1_b']
    """

    def __init__(self, name=None, init_params=True, allow_not_known_ops=True, skip_sparse_optim=False,
                 param_model=None, arg_scope=None):
        self.name = name or "model"
        self.net = core.Net(self.name)
        if param_model is not None:
            self.param_init_net = param_model.param_init_net
            self.param_to_grad = param_model.param_to_grad
            self.params = param_model.params
            self._parameters_info = param_model._parameters_info
            self._computed_params = param_model._computed_params
        else:
            self.param_init_net = core.Net(self.name + "_init")
            self.param_to_grad = {}
            self.params = []
            self._parameters_info = {}
            self._computed_params = []
        self._devices = []
        self.gradient_ops_added = False
        self.init_params = init_params
        self.allow_not_known_ops = allow_not_known_ops
        self.skip_sparse_optim = skip_sparse_optim
        self.weights = []
        self.biases = []
        self.grad_map = {}
        self._arg_scope = {"order": "NCHW", "use_cudnn": True, "cudnn_exhaustive_search": False}
        if arg_scope is not None:
            self._arg_scope.update(arg_scope)

    @property
    def arg_scope(self):
        return self._arg_scope

    def get_name(self):
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, {len(self.params)} params)"

    # ----------------------------------------------------------------- parameters
    @staticmethod
    def _normalize_tags(tags):
        if tags is None:
            return set()
        return {tags} if isinstance(tags, str) else set(tags)

    def create_param(self, param_name, shape, initializer, tags=None):
        """Create (or return the existing) parameter ``<NameScope>param_name``.

        ``initializer`` emits the fill op into ``param_init_net``; ``tags`` are ParameterTags.
        """
        if isinstance(param_name, core.BlobReference):
            param_name = str(param_name)
        elif isinstance(param_name, str):
            param_name = scope.CurrentNameScope() + param_name
        else:
            raise TypeError(f"Unsupported type for param_name: {type(param_name).__name__}")
        shape = [int(d) for d in shape] if shape is not None else None
        existing = self._parameters_info.get(param_name)
        if existing is not None:
            if existing.shape != shape:
                raise errors.ShapeError(
                    f"parameter '{param_name}' already exists with shape {existing.shape}; asked for {shape}")
            return existing.blob
        info = initializer.create_param(param_name=core.BlobReference(param_name), init_net=self.param_init_net,
                                        shape=shape)
        self._parameters_info[param_name] = info
        self.AddParameter(info.blob, tags)
        return info.blob

    def get_param_info(self, param):
        return self._parameters_info.get(str(param))

    def AddParameter(self, param, tags=None):
        """Register a blob as a parameter (COMPUTED_PARAM ones are not optimised)."""
        if not isinstance(param, core.BlobReference):
            raise TypeError("AddParameter takes a BlobReference")
        tags = self._normalize_tags(tags)
        if ParameterTags.COMPUTED_PARAM in tags:
            self._computed_params.append(param)
        else:
            self.params.append(param)
        if ParameterTags.WEIGHT in tags:
            self.weights.append(param)
        if ParameterTags.BIAS in tags:
            self.biases.append(param)

    @staticmethod
    def _NormalizeNamescope(namescope):
        if namescope is None:
            return scope.CurrentNameScope()
        if namescope == "" or namescope.endswith("/"):
            return namescope
        return namescope + "/"

    def GetParams(self, namescope=None, top_scope=False):
        """Parameters under ``namescope`` (default: the current NameScope)."""
        namescope = ModelHelper._NormalizeNamescope(namescope)
        if namescope == "":
            return self.params[:]
        return [p for p in self.params if str(p).startswith(namescope)]

    def GetComputedParams(self, namescope=None):
        namescope = ModelHelper._NormalizeNamescope(namescope)
        if namescope == "":
            return self._computed_params[:]
        return [p for p in self._computed_params if str(p).startswith(namescope)]

    def GetAllParams(self, namescope=None):
        return self.GetParams(namescope) + self.GetComputedParams(namescope)

    def get_param_to_grad(self, params):
        """{param: gradient blob} for the params that received a gradient."""
        return {p: self.grad_map[str(p)] for p in params if str(p) in self.grad_map}

    def AddGradientOperators(self, *args, **kwargs):
        """Add the backward pass to ``net`` (once per model); fills ``param_to_grad``."""
        if self.gradient_ops_added:
            raise RuntimeError("You cannot run AddGradientOperators twice on the same model.")
        self.gradient_ops_added = True
        self.grad_map = self.net.AddGradientOperators(*args, **kwargs)
        self.param_to_grad = self.get_param_to_grad(self.params)
        for param, grad in self.param_to_grad.items():
            info = self._parameters_info.get(str(param))
            if info is not None:
                info.grad = grad
        return self.grad_map

    def GetOptimizationParamInfo(self, params=None):
        """ParameterInfo of every (given) parameter that has a gradient."""
        from nbcaffe.modeling.parameter_info import ParameterInfo

        params = self.params if params is None else params
        infos = []
        for param in params:
            grad = self.param_to_grad.get(param)
            if grad is None:
                continue
            info = self._parameters_info.get(str(param))
            if info is None:
                info = ParameterInfo(param_id=None, param=param)
                self._parameters_info[str(param)] = info
            info.grad = grad
            infos.append(info)
        return infos

    def Validate(self):
        """Refuse duplicate parameters (a param listed twice would be updated twice)."""
        names = [str(p) for p in self.params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise errors.NbcaffeError(f"Duplicate parameters in model '{self.name}': {dupes}")

    # ----------------------------------------------------------------- nets
    def Proto(self):
        return self.net.Proto()

    def InitProto(self):
        return self.param_init_net.Proto()

    def RunAllOnGPU(self, *args, **kwargs):
        self.param_init_net.RunAllOnGPU(*args, **kwargs)
        self.net.RunAllOnGPU(*args, **kwargs)

    def GetDevices(self):
        return self._devices

    # ----------------------------------------------------------------- data input
    def CreateDB(self, blob_out, db, db_type="minidb", **kwargs):
        """Add ``CreateDB([], blob_out, db=db, db_type=db_type)`` to ``param_init_net``;
        returns the DB reader blob that TensorProtosDBInput / ImageInput / Load read."""
        return self.param_init_net.CreateDB([], blob_out, db=db, db_type=db_type, **kwargs)

    def TensorProtosDBInput(self, unused_blob_in, blob_out, batch_size, db, db_type="minidb", **kwargs):
        """Read ``batch_size`` TensorProtos rows per run from the DB at ``db`` into
        ``blob_out`` (one blob per tensor of a row); see :func:`nbcaffe.brew.db_input`.

        As in Caffe2, ``unused_blob_in`` must be empty: the reader is created here (to use an
        existing reader, call ``model.net.TensorProtosDBInput(reader, ...)``).

        Example:
            >>> m = ModelHelper(name="db_doc")
            >>> data, label = m.TensorProtosDBInput([], ["data", "label"], batch_size=8, db="x.minidb")
            >>> str(data), m.net.Proto().op[0].type
            ('data', 'TensorProtosDBInput')
        """
        if unused_blob_in:
            raise errors.ArgumentError(
                "model.TensorProtosDBInput creates its own DB reader, so its first argument must be [] (got"
                f" {unused_blob_in!r}); use model.net.TensorProtosDBInput(reader, ...) to read an existing reader")
        from nbcaffe.helpers import db_input

        if kwargs:
            raise errors.ArgumentError(f"model.TensorProtosDBInput: unexpected arguments {sorted(kwargs)}")
        return db_input.db_input(self, blob_out, batch_size, db, db_type)

    def __getattr__(self, op_type):
        """``model.Softmax(...)`` adds the op to ``model.net`` (logged once for ops outside
        the known-safe list, as in Caffe2)."""
        if op_type.startswith("_"):
            raise AttributeError(op_type)
        if not core.IsOperator(op_type):
            raise AttributeError(
                f"Method {op_type} is not a registered operator.{errors.did_you_mean(op_type, core.registry.SCHEMAS)}")
        if op_type not in KNOWN_WORKING_OPS:
            if not self.allow_not_known_ops:
                raise AttributeError(f"Operator {op_type} is not known to be safe")
            if op_type not in _warned:
                _warned.add(op_type)
                log.warning("You are creating an op that the ModelHelper does not recognize: %s.", op_type)
        return self.net.__getattr__(op_type)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(KNOWN_WORKING_OPS))

    # Initializer shorthands kept from CNNModelHelper.
    @property
    def XavierInit(self):
        return ("XavierFill", {})

    @property
    def MSRAInit(self):
        return ("MSRAFill", {})

    @property
    def ZeroInit(self):
        return ("ConstantFill", {})

    def ConstantInit(self, value):
        return ("ConstantFill", dict(value=value))


def default_initializers(model, weight_init, bias_init, WeightInitializer, BiasInitializer,
                         default_weight=("XavierFill", {}), default_bias=("ConstantFill", {})):
    """Resolve a builder's initializer arguments (ExternalInitializer when not init_params)."""
    if not model.init_params:
        return initializers.ExternalInitializer(), initializers.ExternalInitializer()
    weight = initializers.update_initializer(WeightInitializer, weight_init, default_weight)
    bias = initializers.update_initializer(BiasInitializer, bias_init, default_bias)
    return weight, bias


def ExtractPredictorNet(net_proto, input_blobs, output_blobs, device=None, renames=None, disabled_inputs=None):
    """(predict net, parameter names): the part of a (test) model's net that computes
    ``output_blobs`` from ``input_blobs`` — Caffe2's ``model_helper.ExtractPredictorNet``.

    Keeps the ops from the first one reading an input to the last one writing an output whose
    inputs are all known (net inputs, external inputs, outputs of kept ops; ``disabled_inputs``
    switch branches off), moves them to ``device`` (a DeviceOption) if given and renames blobs by
    ``renames``.  The parameter names are the predictor's external inputs other than the inputs:
    what to store with it (``mobile_exporter.Export``, ``predictor_exporter``).  Ops carrying
    ``is_test=0`` are refused: extract from a test model (``init_params=False``, ``is_test=True``).

    Example:
        >>> predict_net, params = ExtractPredictorNet(test_model.net.Proto(), ["data"], ["softmax"])  # doctest: +SKIP
    """
    from nbcaffe.data_parallel_model._predictor import extract_predictor_net

    return extract_predictor_net(net_proto, input_blobs, output_blobs, device=device, renames=renames,
                                 disabled_inputs=disabled_inputs)
