"""Optimizers: add parameter-update ops to a model (Caffe2's ``optimizer`` module).

``build_sgd(model, base_learning_rate=0.1, policy="step", stepsize=1, gamma=0.999)`` adds,
for every parameter with a gradient, the ops that update it, with Caffe2's blob names:
``optimizer_iteration`` (int64 host counter, advanced by ``AtomicIter`` under
``iteration_mutex``), one learning-rate blob per optimizer instance and device
(``SgdOptimizer_0_lr_cpu``, ``..._lr_gpu0``), ``ONE_<device_type>_<device_id>`` constants,
and per-parameter state (``<param>_momentum``, ``_first_moment``/``_second_moment``,
``_squared_sum``, ``_mean_squares``).  Plain SGD is ``WeightedSum([param, ONE, grad, lr])``
with a negative learning rate; momentum SGD uses ``MomentumSGDUpdate`` with a positive one.
"""

from __future__ import annotations

import collections

from nbcaffe import core, errors, scope
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.modeling.parameter_info import ParameterInfo

OPTIMIZER_ITERATION_NAME = "optimizer_iteration"
ITERATION_MUTEX_NAME = "iteration_mutex"

_optimizer_instance_count = collections.defaultdict(int)

AuxOptimizerParams = collections.namedtuple("AuxOptimizerParams", ["local", "shared"])


def BuildUniqueMutexIter(init_net, net, iter=None, iter_mutex=None, iter_val=0):
    """The shared iteration counter: created once in ``init_net`` (int64 [1] on the CPU, with a
    mutex) and advanced by one ``AtomicIter`` per step in ``net``."""
    iter = iter or OPTIMIZER_ITERATION_NAME
    iter_mutex = iter_mutex or ITERATION_MUTEX_NAME
    if not init_net.BlobIsDefined(iter):
        with core.DeviceScope(DeviceOption(CPU)):
            iteration = init_net.ConstantFill([], iter, shape=[1], value=iter_val, dtype=core.DataType.INT64)
            mutex = init_net.CreateMutex([], [iter_mutex])
            net.AtomicIter([mutex, iteration], [iteration])
    else:
        iteration = init_net.GetBlobRef(iter)
    return iteration


class Optimizer:
    """Base class: ``optimizer(net, param_init_net, param_info)`` adds the update of one param."""

    def __init__(self):
        self._aux_params = AuxOptimizerParams(local=[], shared=[])
        self._instance_num = _optimizer_instance_count[type(self).__name__]
        _optimizer_instance_count[type(self).__name__] += 1
        self._lr_multiplier = None

    def __call__(self, net, param_init_net, param, grad=None):
        if grad is None:
            if not isinstance(param, ParameterInfo) or param.grad is None:
                raise errors.NbcaffeError("Optimizer: give a ParameterInfo with a gradient, or (param, grad)")
        else:
            param = ParameterInfo(param_id=None, param=param, grad=grad)
        self._run(net, param_init_net, param)

    def _run(self, net, param_init_net, param_info):
        raise NotImplementedError

    def get_cpu_blob_name(self, base_str, node_name=""):
        return f"{type(self).__name__}_{self._instance_num}_{base_str}{node_name}_cpu"

    def get_gpu_blob_name(self, base_str, gpu_id, node_name):
        return f"{type(self).__name__}_{self._instance_num}_{base_str}{node_name}_gpu{gpu_id}"

    def make_unique_blob_name(self, base_str):
        """``<Class>_<instance>_<base>_cpu`` or ``..._gpu<id>`` from the current DeviceScope."""
        current = scope.CurrentDeviceScope()
        if current is None:
            return self.get_cpu_blob_name(base_str)
        if current.device_type == CUDA:
            return self.get_gpu_blob_name(base_str, current.device_id, current.node_name)
        return self.get_cpu_blob_name(base_str, current.node_name)

    def build_lr(self, net, param_init_net, base_learning_rate, learning_rate_blob=None, policy="fixed",
                 iter_val=0, **kwargs):
        """The LearningRate op (``base_lr = -base_learning_rate``) fed by the shared counter."""
        if learning_rate_blob is None:
            learning_rate_blob = self.make_unique_blob_name("lr")
        iteration = BuildUniqueMutexIter(param_init_net, net, iter_val=iter_val)
        if not net.BlobIsDefined(learning_rate_blob):
            lr = net.LearningRate([iteration], learning_rate_blob, base_lr=-base_learning_rate, policy=policy,
                                  **kwargs)
        else:
            lr = net.GetBlobRef(learning_rate_blob)
        if self._lr_multiplier is not None:
            multiplier = self._lr_multiplier
            current = scope.CurrentDeviceScope()
            if current is not None and current.device_type == CUDA:
                multiplier = net.CopyCPUToGPU(self._lr_multiplier, self.make_unique_blob_name("lr_multiplier_gpu"))
            lr = net.Mul([lr, multiplier], self.make_unique_blob_name("scaled_lr"), broadcast=1)
        return lr, iteration

    def add_lr_multiplier(self, lr_multiplier):
        """Multiply every learning rate by this blob (e.g. the gradient-norm clipping ratio)."""
        self._lr_multiplier = lr_multiplier

    def get_auxiliary_parameters(self):
        return self._aux_params

    @staticmethod
    def dedup(net, sparse_dedup_aggregator, grad):
        return grad


def _one(param_init_net):
    """The per-device ``ONE_<type>_<id>`` constant of the plain SGD update."""
    dev = scope.CurrentDeviceScope() or DeviceOption(CPU)
    return param_init_net.ConstantFill([], f"ONE_{dev.device_type}_{dev.device_id}{dev.node_name}", shape=[1],
                                       value=1.0)


class SgdOptimizer(Optimizer):
    """SGD, with optional (Nesterov) momentum.  ``**kwargs`` go to the LearningRate op
    (``stepsize``, ``gamma``, ...)."""

    def __init__(self, base_learning_rate=0.01, policy="fixed", momentum=0.0, nesterov=True,
                 sparse_dedup_aggregator=None, lars=None, **kwargs):
        super().__init__()
        self.base_learning_rate = base_learning_rate
        self.policy = policy
        self.momentum = momentum
        self.nesterov = nesterov
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.lars = lars
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.base_learning_rate == 0:
            return
        if self.base_learning_rate < 0:
            raise errors.NbcaffeError(f"Expect positive base learning rate, got {self.base_learning_rate}")
        # WeightedSum adds lr * grad, so plain SGD needs a negative rate; MomentumSGDUpdate
        # subtracts its step, so it takes a positive one.
        lr_sign = -1 if self.momentum else 1
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=self.base_learning_rate * lr_sign,
                              policy=self.policy, **self.init_kwargs)
        one = _one(param_init_net)
        self._aux_params.shared.append(one)
        if self.momentum > 0:
            momentum_data = param_init_net.ConstantFill(param, str(param) + "_momentum", value=0.0)
            self._aux_params.local.append(momentum_data)
            net.MomentumSGDUpdate([grad, momentum_data, lr, param], [grad, momentum_data, param],
                                  momentum=self.momentum, nesterov=self.nesterov)
        else:
            net.WeightedSum([param, one, grad, lr], param)


class AdamOptimizer(Optimizer):
    """Adam (Kingma & Ba) with Caffe2's defaults alpha 0.001, beta1 0.9, beta2 0.999, epsilon 1e-8."""

    def __init__(self, alpha=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, policy="fixed",
                 sparse_dedup_aggregator=None, rowWise=False, engine="", **kwargs):
        super().__init__()
        self.alpha = alpha
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.policy = policy
        self.engine = engine
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, iteration = self.build_lr(net, param_init_net, base_learning_rate=self.alpha, policy=self.policy,
                                      **self.init_kwargs)
        m1 = param_init_net.ConstantFill([param], str(param) + "_first_moment", value=0.0)
        m2 = param_init_net.ConstantFill([param], str(param) + "_second_moment", value=0.0)
        self._aux_params.shared.append(iteration)
        self._aux_params.local.extend([m1, m2])
        net.Adam([param, m1, m2, grad, lr, iteration], [param, m1, m2], beta1=self.beta1, beta2=self.beta2,
                 epsilon=self.epsilon)


class AdagradOptimizer(Optimizer):
    """Adagrad with Caffe2's defaults alpha 0.01, epsilon 1e-4, decay 1."""

    def __init__(self, alpha=0.01, epsilon=1e-4, decay=1, policy="fixed", sparse_dedup_aggregator=None,
                 rowWise=False, engine="", **kwargs):
        super().__init__()
        self.alpha = alpha
        self.epsilon = epsilon
        self.decay = decay
        self.policy = policy
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=self.alpha, policy=self.policy,
                              **self.init_kwargs)
        history = param_init_net.ConstantFill([param], str(param) + "_squared_sum", value=0.0)
        self._aux_params.local.append(history)
        net.Adagrad([param, history, grad, lr], [param, history], epsilon=self.epsilon, decay=float(self.decay))


class RmsPropOptimizer(Optimizer):
    """RmsProp with Caffe2's defaults alpha 0.01, decay 0.9, momentum 0, epsilon 1e-5."""

    def __init__(self, alpha=0.01, decay=0.9, momentum=0.0, epsilon=1e-5, policy="fixed", engine="", **kwargs):
        super().__init__()
        self.alpha = alpha
        self.decay = decay
        self.momentum = momentum
        self.epsilon = epsilon
        self.policy = policy
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=self.alpha, policy=self.policy,
                              **self.init_kwargs)
        mean_squares = param_init_net.ConstantFill([param], str(param) + "_mean_squares", value=0.0)
        momentum = param_init_net.ConstantFill([param], str(param) + "_momentum", value=0.0)
        self._aux_params.local.extend([mean_squares, momentum])
        net.RmsProp([grad, mean_squares, momentum, lr], [grad, mean_squares, momentum], decay=self.decay,
                    momentum=self.momentum, epsilon=self.epsilon)
        net.Add([param, grad], param)


class WeightDecayBuilder(Optimizer):
    """Adds ``weight_decay * param`` to each weight's gradient (before the optimizer runs)."""

    def __init__(self, weight_decay):
        super().__init__()
        self.weight_decay = weight_decay

    def _run(self, net, param_init_net, param_info):
        dev = scope.CurrentDeviceScope() or DeviceOption(CPU)
        wd = param_init_net.ConstantFill([], f"wd_{dev.device_type}_{dev.device_id}", shape=[1],
                                         value=self.weight_decay)
        one = _one(param_init_net)
        net.WeightedSum([param_info.grad, one, param_info.blob, wd], param_info.grad)


def _get_param_to_device(model):
    """{param name: DeviceOption} from the ops of the model's init net that create params."""
    devices = {}
    for op in model.param_init_net.Proto().op:
        for out in op.output:
            if op.HasField("device_option"):
                devices[out] = op.device_option
    return devices


def _calc_norm_ratio(model, params, name_scope, param_to_device, max_gradient_norm):
    """clip_norm / max(global_norm, clip_norm): the learning-rate multiplier that caps the
    global gradient norm at ``max_gradient_norm`` (a CPU scalar)."""
    with core.NameScope(name_scope):
        grad_squared_sums = []
        for i, param_info in enumerate(params):
            device = param_to_device.get(str(param_info.blob))
            with core.DeviceScope(device):
                squared = model.net.SumSqrElements(param_info.grad, f"grad_{i}_squared_sum")
                if device is not None and device.device_type == CUDA:
                    squared = model.net.CopyGPUToCPU(squared, f"grad_{i}_squared_sum_cpu")
                grad_squared_sums.append(squared)
        with core.DeviceScope(DeviceOption(CPU)):
            full = model.net.Sum(grad_squared_sums, "grad_squared_full_sum")
            global_norm = model.net.Pow(full, "global_norm", exponent=0.5)
            clip_norm = model.param_init_net.ConstantFill([], "clip_norm", shape=[], value=float(max_gradient_norm))
            max_norm = model.net.Max([global_norm, clip_norm], "max_norm")
            return model.net.Div([clip_norm, max_norm], "norm_ratio")


def _build(model, optimizer, weights_only=False, use_param_info_optim=True, max_gradient_norm=None,
           allow_lr_injection=False):
    if not model.gradient_ops_added:
        raise errors.NbcaffeError(
            f"model '{model.name}' has no gradient ops: call model.AddGradientOperators([loss]) before adding an"
            f" optimizer")
    param_to_device = _get_param_to_device(model)
    model.Validate()
    params = []
    for info in model.GetOptimizationParamInfo():
        if weights_only and info.blob not in model.weights:
            continue
        params.append(info)
    if max_gradient_norm is not None:
        optimizer.add_lr_multiplier(_calc_norm_ratio(model, params, "norm_clipped_grad_update", param_to_device,
                                                     max_gradient_norm))
    for info in params:
        device = param_to_device.get(str(info.blob))
        with core.DeviceScope(device):
            if info.optimizer is not None and use_param_info_optim:
                info.optimizer(model.net, model.param_init_net, info)
            else:
                optimizer(model.net, model.param_init_net, info)
    return optimizer


def build_sgd(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False, **kwargs):
    """Plain or momentum SGD for every parameter with a gradient (``momentum=0.9`` selects
    MomentumSGDUpdate; ``policy``/``stepsize``/``gamma``... schedule the learning rate)."""
    return _build(model, SgdOptimizer(base_learning_rate, **kwargs), max_gradient_norm=max_gradient_norm,
                  allow_lr_injection=allow_lr_injection)


def build_adam(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False, **kwargs):
    return _build(model, AdamOptimizer(alpha=base_learning_rate, **kwargs), max_gradient_norm=max_gradient_norm,
                  allow_lr_injection=allow_lr_injection)


def build_adagrad(model, base_learning_rate, parameters=None, max_gradient_norm=None, allow_lr_injection=False,
                  **kwargs):
    return _build(model, AdagradOptimizer(alpha=base_learning_rate, **kwargs), max_gradient_norm=max_gradient_norm,
                  allow_lr_injection=allow_lr_injection)


def build_rms_prop(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False, **kwargs):
    return _build(model, RmsPropOptimizer(alpha=base_learning_rate, **kwargs), max_gradient_norm=max_gradient_norm,
                  allow_lr_injection=allow_lr_injection)


def add_weight_decay(model, weight_decay):
    """Add ``weight_decay * w`` to the gradient of every *weight* (biases are left alone)."""
    return _build(model, WeightDecayBuilder(weight_decay=weight_decay), weights_only=True,
                  use_param_info_optim=False)


__all__ = ["build_sgd", "build_adam", "build_adagrad", "build_rms_prop", "add_weight_decay", "SgdOptimizer",
           "AdamOptimizer", "AdagradOptimizer", "RmsPropOptimizer", "WeightDecayBuilder", "Optimizer"]
