"""Training ops: iteration counters, learning-rate schedules, parameter updates, Accuracy.

Update ops (WeightedSum, MomentumSGDUpdate, Adam, Adagrad, RmsProp) run in place on their
parameter and state blobs, exactly as the optimizers in nbcaffe/optimizer.py wire them;
learning rates are 1-element tensors on the op's device, iteration counters int64 [1]
tensors on the host (Caffe2 kept them on the CPU even for GPU models).
"""

from __future__ import annotations

import functools
import threading

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.operator import Operator
from nbcaffe.ops import _update_kernels as uk
from nbcaffe.ops._elementwise import flat
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

# ----------------------------------------------------------------------------- counters


@numba.njit(cache=True)
def iter_cpu(counter):
    """counter[0] += 1 (int64, in place)."""
    counter[0] += 1


class _Counter(Operator):
    """Shared checks of Iter/AtomicIter: the counter is a 1-element int64 host tensor."""

    input_device = "host"
    output_device = "host"
    gradient = None
    cpu = staticmethod(iter_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        shape, dtype = shapes[-1], dtypes[-1]
        if schema.prod(shape) != 1 or np.dtype(dtype) != np.int64:
            raise errors.ShapeError(f"the iteration counter must be one int64 value, got {tuple(shape)}"
                                    f" {np.dtype(dtype).name}")
        return [shape], [dtype]

    def bind(self, inputs, outputs):
        return functools.partial(self.kernel, outputs[0].reshape(1))


@register_op
class Iter(_Counter):
    """iter += 1: the training-iteration counter (int64, one value, host memory; in place).

    Without an input the op keeps its own counter in its output blob, starting at 0.
    """

    inputs, outputs = ("iter",), ("iter",)
    num_inputs = (0, 1)
    enforce_inplace = {0: 0}

    def output_spec(self, inputs):
        if not inputs:
            return [(1,)], [np.dtype(np.int64)]
        return super().output_spec(inputs)

    def allocate_outputs(self, inputs, shapes, dtypes):
        if not inputs:
            current = self.blobs.get(self.output_names[0])
            if isinstance(current, np.ndarray) and current.dtype == np.int64 and current.size == 1:
                return [current]
            return [np.zeros(1, np.int64)]
        return super().allocate_outputs(inputs, shapes, dtypes)

    @staticmethod
    def reference(iter=None):
        return (np.asarray(iter) + 1,) if iter is not None else (np.ones(1, np.int64),)


@register_op
class AtomicIter(_Counter):
    """iter += 1 under a mutex (the counter shared by data-parallel replicas); in place."""

    inputs, outputs = ("mutex", "iter"), ("iter",)
    enforce_inplace = {1: 0}
    input_device = {0: "any", 1: "host"}

    def bind(self, inputs, outputs):
        mutex, counter = inputs[0], outputs[0].reshape(1)
        if not hasattr(mutex, "acquire"):
            raise errors.ShapeError(f"input 0 '{self.input_names[0]}' must be a mutex from CreateMutex, got"
                                    f" {type(mutex).__name__}")
        kernel = self.kernel

        def call():
            with mutex:
                kernel(counter)

        return call

    @staticmethod
    def reference(mutex, iter):
        return (np.asarray(iter) + 1,)


class Mutex:
    """The value CreateMutex stores: a lock (context manager) with a readable repr."""

    def __init__(self):
        self._lock = threading.Lock()

    def acquire(self, *args):
        return self._lock.acquire(*args)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    def __repr__(self):
        return "<nbcaffe Mutex>"


def create_mutex_cpu(outputs):
    outputs[0] = Mutex()


@register_op
class CreateMutex(Operator):
    """mutex = a new lock object (for AtomicIter)."""

    inputs, outputs = (), ("mutex",)
    gradient = None
    opaque_outputs = True
    values_dependent = True
    input_device = "any"
    cpu = staticmethod(create_mutex_cpu)

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe.shape_inference import UnknownShape

        raise UnknownShape()

    @staticmethod
    def reference():
        return (Mutex(),)

    def prepare(self, inputs):
        # the output is a new Python object, whatever the device or engine
        holder = [None]
        create_mutex_cpu(holder)
        self._call = _noop
        return holder


def _noop():
    pass


# ----------------------------------------------------------------------------- learning rate

POLICIES = {"fixed": 0, "step": 1, "exp": 2, "inv": 3, "poly": 4, "linearWarmup": 5, "constantWarmup": 6,
            "multistep": 7, "alter": 8}


@numba.njit(cache=True)
def lr_multiplier(policy, it, gamma, stepsize, power, max_iter, start_multiplier, num_iter, multiplier,
                  stepsizes, active_first, active_period, inactive_period):
    """The learning-rate multiplier of ``policy`` (a POLICIES code) at iteration ``it``."""
    if policy == 0:
        return 1.0
    if policy == 1:
        return gamma ** (it // stepsize)
    if policy == 2:
        return gamma ** it
    if policy == 3:
        return (1.0 + gamma * it) ** (-power)
    if policy == 4:
        return (1.0 - it / max_iter) ** power
    if policy == 5:
        if it >= num_iter:
            return 1.0
        return start_multiplier + (1.0 - start_multiplier) * it / num_iter
    if policy == 6:
        return multiplier if it < num_iter else 1.0
    if policy == 7:
        passed = 0
        for s in stepsizes:
            if it >= s:
                passed += 1
        return gamma ** passed
    # alter: active for active_period iterations, inactive for inactive_period, repeating
    period = active_period + inactive_period
    if period <= 0:
        return 1.0
    in_active = (it % period) < active_period
    active = in_active if active_first else not ((it % period) < inactive_period)
    return 1.0 if active else 0.0


def learning_rate_cpu(counter, out, base_lr, policy_args):
    """out[0] = base_lr * multiplier(counter[0]) (host counter, host output)."""
    out[0] = base_lr * lr_multiplier(policy_args[0], counter[0], *policy_args[1:])


@register_op
class LearningRate(Operator):
    """lr = base_lr * multiplier(iter): the learning-rate schedule (a 0-d tensor on the op's device).

    Policies (``policy``): fixed; step (gamma^floor(iter/stepsize)); multistep
    (gamma^#{stepsizes <= iter}); exp (gamma^iter); inv ((1 + gamma*iter)^-power); poly
    ((1 - iter/max_iter)^power); linearWarmup (start_multiplier rising linearly to 1 over
    num_iter); constantWarmup (multiplier until num_iter, then 1); alter (1 for
    active_period iterations, 0 for inactive_period, repeating).  ``iter`` is the int64
    host counter; ``base_lr`` is required (optimizers pass it negated for descent).
    """

    inputs, outputs = ("iter",), ("lr",)
    input_device = {0: "host"}
    gradient = None
    args = {
        "base_lr": Arg("float", None, "base learning rate", required=True),
        "policy": Arg("str", None, "schedule name", required=True),
        "gamma": 0.0, "stepsize": 0, "stepsizes": Arg("ints", (), "multistep boundaries"),
        "power": 0.0, "max_iter": -1, "start_multiplier": 0.0, "num_iter": 0, "multiplier": 0.5,
        "active_first": True, "active_period": -1, "inactive_period": -1,
    }
    cpu = staticmethod(learning_rate_cpu)

    def setup(self):
        a = self.args
        policy = a["policy"]
        if policy not in POLICIES:
            raise errors.ArgumentError(f"{self.where()}: unknown learning rate policy '{policy}'."
                                       f"{errors.did_you_mean(policy, POLICIES)}")
        need = {"step": [("stepsize", 0), ("gamma", 0)], "exp": [("gamma", 0)], "inv": [("gamma", 0), ("power", 0)],
                "poly": [("power", 0), ("max_iter", 0)], "linearWarmup": [("start_multiplier", 0)],
                "multistep": [("gamma", 0)], "constantWarmup": [("multiplier", 0)]}.get(policy, [])
        for name, floor in need:
            if not a[name] > floor:
                raise errors.ArgumentError(f"{self.where()}: policy '{policy}' needs '{name}' > {floor}, got {a[name]}")
        if policy == "multistep" and not a["stepsizes"]:
            raise errors.ArgumentError(f"{self.where()}: policy 'multistep' needs 'stepsizes'")
        self.policy_args = (POLICIES[policy], float(a["gamma"]), int(a["stepsize"]) or 1, float(a["power"]),
                            float(a["max_iter"]), float(a["start_multiplier"]), int(a["num_iter"]),
                            float(a["multiplier"]), np.asarray(a["stepsizes"] or (0,), np.int64),
                            bool(a["active_first"]), int(a["active_period"]), int(a["inactive_period"]))

    @staticmethod
    def infer(args, shapes, dtypes):
        return [()], [np.dtype(np.float32)]

    @staticmethod
    def reference(iter, base_lr=None, policy=None, gamma=0.0, stepsize=0, stepsizes=(), power=0.0, max_iter=-1,
                  start_multiplier=0.0, num_iter=0, multiplier=0.5, active_first=True, active_period=-1,
                  inactive_period=-1):
        it = int(np.asarray(iter).reshape(-1)[0])
        if policy == "fixed":
            m = 1.0
        elif policy == "step":
            m = gamma ** (it // stepsize)
        elif policy == "multistep":
            m = gamma ** sum(it >= s for s in stepsizes)
        elif policy == "exp":
            m = gamma ** it
        elif policy == "inv":
            m = (1 + gamma * it) ** -power
        elif policy == "poly":
            m = (1 - it / max_iter) ** power
        elif policy == "linearWarmup":
            m = 1.0 if it >= num_iter else start_multiplier + (1 - start_multiplier) * it / num_iter
        elif policy == "constantWarmup":
            m = multiplier if it < num_iter else 1.0
        else:
            period = active_period + inactive_period
            pos = it % period
            m = float(pos < active_period) if active_first else float(not pos < inactive_period)
        return (np.asarray(base_lr * m, dtype=np.float32),)

    def bind(self, inputs, outputs):
        counter = self.read_host(inputs[0]).reshape(-1)
        if counter.dtype != np.int64 or counter.size != 1:
            raise errors.ShapeError(f"iter must be one int64 value, got {counter.shape} {counter.dtype}")
        return functools.partial(self.kernel, counter, outputs[0].reshape(1), float(self.args["base_lr"]),
                                 self.policy_args)


# ----------------------------------------------------------------------------- updates


def weighted_sum_cpu(xs, ws, out):
    """out = Σ ws[k][0] * xs[k] over tuples of flat arrays (out may be xs[0]: the same object)."""

    def run(lo, hi):
        o = out[lo:hi]
        if xs[0] is out and len(xs) == 2:
            uk.axpby_inplace(o, ws[0], xs[1][lo:hi], ws[1])
            return
        if xs[0] is out:
            uk.scale_inplace(o, ws[0])
        else:
            uk.scale_into(xs[0][lo:hi], ws[0], o)
        for x, w in zip(xs[1:], ws[1:]):
            uk.axpy(x[lo:hi], w, o)

    uk.split_update(out.size, run)


@register_op
class WeightedSum(Operator):
    """Y = w0 * X0 + w1 * X1 + ... for inputs X0, w0, X1, w1, ... (each w a 1-element tensor,
    every X one shape).  Y may alias X0 — the plain SGD update ``[param, ONE, grad, lr]``."""

    inputs, outputs = ("X0", "weight_0", "X1, weight_1, ..."), ("Y",)
    num_inputs = (2, None)
    inplace = {0: 0}
    gradient = None
    cpu = staticmethod(weighted_sum_cpu)

    def setup(self):
        if len(self.input_names) % 2:
            raise errors.SchemaError(f"{self.where()}: inputs come in (X, weight) pairs; got {len(self.input_names)}")

    @staticmethod
    def infer(args, shapes, dtypes):
        for k in range(0, len(shapes), 2):
            if tuple(shapes[k]) != tuple(shapes[0]):
                raise errors.ShapeError(f"X{k // 2} {tuple(shapes[k])} differs from X0 {tuple(shapes[0])}")
            if schema.prod(shapes[k + 1]) != 1:
                raise errors.ShapeError(f"weight_{k // 2} must hold one value, got {tuple(shapes[k + 1])}")
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(*inputs):
        total = np.zeros(inputs[0].shape, np.float64)
        for k in range(0, len(inputs), 2):
            total += float(np.asarray(inputs[k + 1]).reshape(-1)[0]) * inputs[k]
        return (total.astype(inputs[0].dtype),)

    def bind(self, inputs, outputs):
        if any(x is outputs[0] for x in inputs[2::2]):  # a later X aliased with the output is read after writing
            raise errors.SchemaError("WeightedSum: only X0 may be the output blob")
        out = flat(outputs[0])
        # X0 in place: the output's own view, so the kernel sees the aliasing
        xs = (out if inputs[0] is outputs[0] else flat(inputs[0]),) + tuple(flat(x) for x in inputs[2::2])
        ws = tuple(w.reshape(1) for w in inputs[1::2])
        return functools.partial(self.kernel, xs, ws, out)


def momentum_sgd_cpu(g, m, lr, param, momentum, nesterov, ng, nm):
    """Momentum SGD on flat arrays (lr positive, lr[0]); writes ng, nm and updates param.

    The op runs in place (ng is g, nm is m); other outputs are first filled with g and m."""
    if ng is not g:
        ng[...] = g
    if nm is not m:
        nm[...] = m
    uk.split_update(ng.size, lambda lo, hi: uk.momentum_inplace(ng[lo:hi], nm[lo:hi], lr, param[lo:hi], momentum,
                                                           nesterov))


def _same_shapes(shapes, names, what):
    for shape, name in zip(shapes[1:], names[1:]):
        if tuple(shape) != tuple(shapes[0]):
            raise errors.ShapeError(f"{what}: {name} {tuple(shape)} differs from {names[0]} {tuple(shapes[0])}")


def _one_value(shape, name):
    if schema.prod(shape) != 1:
        raise errors.ShapeError(f"{name} must hold one value, got {tuple(shape)}")


@register_op
class MomentumSGDUpdate(Operator):
    """Momentum SGD, in place: adjusted = lr*g + momentum*m (or Nesterov's form); m = adjusted;
    g = adjusted; param -= adjusted.  Inputs grad, moment, lr (positive), param; outputs the
    same grad, moment and param blobs."""

    inputs, outputs = ("grad", "moment", "lr", "param"), ("output_grad", "output_moment", "output_param")
    enforce_inplace = {0: 0, 1: 1, 3: 2}
    args = {"momentum": 0.0, "nesterov": False}
    gradient = None
    cpu = staticmethod(momentum_sgd_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        _same_shapes([shapes[0], shapes[1], shapes[3]], ["grad", "moment", "param"], "MomentumSGDUpdate")
        _one_value(shapes[2], "lr")
        return [shapes[0], shapes[1], shapes[3]], [dtypes[0], dtypes[1], dtypes[3]]

    @staticmethod
    def reference(grad, moment, lr, param, momentum=0.0, nesterov=False):
        g, m, p = (a.astype(np.float64) for a in (grad, moment, param))
        rate = float(np.asarray(lr).reshape(-1)[0])
        if nesterov:
            m_new = momentum * m + rate * g
            ng = (1 + momentum) * m_new - momentum * m
        else:
            m_new = ng = rate * g + momentum * m
        return ng.astype(grad.dtype), m_new.astype(moment.dtype), (p - ng).astype(param.dtype)

    def bind(self, inputs, outputs):
        g, m, lr, p = inputs
        fg, fm = flat(g), flat(m)
        # in place (enforced): the same view objects, so the kernel knows it may update g and m
        ng = fg if outputs[0] is g else flat(outputs[0])
        nm = fm if outputs[1] is m else flat(outputs[1])
        return functools.partial(self.kernel, fg, fm, lr.reshape(1), flat(p), float(self.args["momentum"]),
                                 bool(self.args["nesterov"]), ng, nm)


def adam_cpu(param, m1, m2, g, lr, it, beta1, beta2, eps):
    """Adam on flat arrays, in place; lr[0] is negative for descent, it[0] the iteration."""
    uk.split_update(param.size, lambda lo, hi: uk.adam(param[lo:hi], m1[lo:hi], m2[lo:hi], g[lo:hi], lr, it, beta1,
                                                  beta2, eps))


@register_op
class Adam(Operator):
    """Adam, in place: m1 = b1*m1 + (1-b1)*g; m2 = b2*m2 + (1-b2)*g²; param += lr *
    sqrt(1-b2^t)/(1-b1^t) * m1/(sqrt(m2)+eps), t = iter+1.  Inputs param, moment_1,
    moment_2, grad, lr (negative for descent), iter (int64 host); outputs param, moment_1,
    moment_2.  Defaults beta1 0.9, beta2 0.999, epsilon 1e-5."""

    inputs, outputs = ("param", "moment_1", "moment_2", "grad", "lr", "iter"), \
        ("output_param", "output_moment_1", "output_moment_2")
    enforce_inplace = {0: 0, 1: 1, 2: 2}
    input_device = {5: "host"}
    args = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-5}
    gradient = None
    cpu = staticmethod(adam_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        _same_shapes(shapes[:4], ["param", "moment_1", "moment_2", "grad"], "Adam")
        _one_value(shapes[4], "lr")
        _one_value(shapes[5], "iter")
        return list(shapes[:3]), list(dtypes[:3])

    @staticmethod
    def reference(param, moment_1, moment_2, grad, lr, iter, beta1=0.9, beta2=0.999, epsilon=1e-5):
        t = int(np.asarray(iter).reshape(-1)[0]) + 1
        g = grad.astype(np.float64)
        m1 = beta1 * moment_1 + (1 - beta1) * g
        m2 = beta2 * moment_2 + (1 - beta2) * g * g
        rate = float(np.asarray(lr).reshape(-1)[0])
        step = rate * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * m1 / (np.sqrt(m2) + epsilon)
        return (param + step).astype(param.dtype), m1.astype(moment_1.dtype), m2.astype(moment_2.dtype)

    def bind(self, inputs, outputs):
        p, m1, m2, g, lr, it = inputs
        return functools.partial(self.kernel, flat(p), flat(m1), flat(m2), flat(g), lr.reshape(1),
                                 self.read_host(it).reshape(1), float(self.args["beta1"]),
                                 float(self.args["beta2"]), float(self.args["epsilon"]))


def adagrad_cpu(param, h, g, lr, eps, decay):
    """Adagrad on flat arrays, in place; lr[0] negative for descent."""
    uk.split_update(param.size, lambda lo, hi: uk.adagrad(param[lo:hi], h[lo:hi], g[lo:hi], lr, eps, decay))


@register_op
class Adagrad(Operator):
    """Adagrad, in place: h = decay*h + g²; param += lr * g / (sqrt(h) + epsilon).  Inputs
    param, moment, grad, lr (negative for descent); outputs param, moment.  Defaults
    epsilon 1e-5, decay 1."""

    inputs, outputs = ("param", "moment", "grad", "lr"), ("output_param", "output_moment")
    enforce_inplace = {0: 0, 1: 1}
    args = {"epsilon": 1e-5, "decay": 1.0}
    gradient = None
    cpu = staticmethod(adagrad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        _same_shapes(shapes[:3], ["param", "moment", "grad"], "Adagrad")
        _one_value(shapes[3], "lr")
        return list(shapes[:2]), list(dtypes[:2])

    @staticmethod
    def reference(param, moment, grad, lr, epsilon=1e-5, decay=1.0):
        g = grad.astype(np.float64)
        h = decay * moment + g * g
        rate = float(np.asarray(lr).reshape(-1)[0])
        return (param + rate * g / (np.sqrt(h) + epsilon)).astype(param.dtype), h.astype(moment.dtype)

    def bind(self, inputs, outputs):
        p, h, g, lr = inputs
        return functools.partial(self.kernel, flat(p), flat(h), flat(g), lr.reshape(1),
                                 float(self.args["epsilon"]), float(self.args["decay"]))


def rmsprop_cpu(g, ms, mom, lr, decay, momentum, eps):
    """RmsProp on flat arrays, in place: the new gradient (the step) replaces g."""
    uk.split_update(g.size, lambda lo, hi: uk.rmsprop(g[lo:hi], ms[lo:hi], mom[lo:hi], lr, decay, momentum, eps))


@register_op
class RmsProp(Operator):
    """RmsProp, in place: ms += (1-decay)*(g² - ms); mom = momentum*mom + lr*g/sqrt(epsilon+ms);
    g = mom (the optimizer then adds g to the parameter).  Inputs grad, mean_squares, mom, lr;
    outputs the same three.  Defaults decay 0.9, momentum 0, epsilon 1e-5."""

    inputs, outputs = ("grad", "mean_squares", "mom", "lr"), ("output_grad", "output_mean_squares", "output_mom")
    enforce_inplace = {0: 0, 1: 1, 2: 2}
    args = {"decay": 0.9, "momentum": 0.0, "epsilon": 1e-5}
    gradient = None
    cpu = staticmethod(rmsprop_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        _same_shapes(shapes[:3], ["grad", "mean_squares", "mom"], "RmsProp")
        _one_value(shapes[3], "lr")
        return list(shapes[:3]), list(dtypes[:3])

    @staticmethod
    def reference(grad, mean_squares, mom, lr, decay=0.9, momentum=0.0, epsilon=1e-5):
        g = grad.astype(np.float64)
        ms = mean_squares + (1 - decay) * (g * g - mean_squares)
        rate = float(np.asarray(lr).reshape(-1)[0])
        m = mom * momentum + rate * g / np.sqrt(epsilon + ms)
        return m.astype(grad.dtype), ms.astype(mean_squares.dtype), m.astype(mom.dtype)

    def bind(self, inputs, outputs):
        g, ms, mom, lr = inputs
        return functools.partial(self.kernel, flat(g), flat(ms), flat(mom), lr.reshape(1),
                                 float(self.args["decay"]), float(self.args["momentum"]), float(self.args["epsilon"]))


# ----------------------------------------------------------------------------- metrics


@numba.njit(cache=True)
def accuracy_cpu(x, label, top_k, out):
    """out[0] = share of rows whose label is among the top_k scores (ties favour lower class
    indices); returns -1 or the first row with an out-of-range label."""
    n, d = x.shape
    correct = 0
    for i in range(n):
        lab = label[i]
        if lab < 0 or lab >= d:
            return i
        target = x[i, lab]
        better = 0
        for j in range(d):
            if x[i, j] > target or (x[i, j] == target and j < lab):
                better += 1
        if better < top_k:
            correct += 1
    out[0] = correct / n if n else 0.0
    return -1


@register_op
class Accuracy(Operator):
    """accuracy = fraction of rows i whose label[i] ranks in the top_k of predictions[i]
    (a class outranks the label if its score is larger, or equal with a smaller index);
    a 0-d float32 tensor.  ``top_k`` default 1."""

    inputs, outputs = ("predictions", "labels"), ("accuracy",)
    args = {"top_k": 1}
    gradient = None
    cpu = staticmethod(accuracy_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        x, label = tuple(shapes[0]), tuple(shapes[1])
        if len(x) != 2:
            raise errors.ShapeError(f"predictions must be 2-D (N, D), got {x}")
        if schema.prod(label) != x[0]:
            raise errors.ShapeError(f"predictions {x} have N={x[0]} rows but labels {label} hold {schema.prod(label)}")
        if not np.issubdtype(dtypes[1], np.integer):
            raise errors.ShapeError(f"labels must be integers, got {np.dtype(dtypes[1]).name}")
        return [()], [np.dtype(np.float32)]

    @staticmethod
    def reference(predictions, labels, top_k=1):
        x = predictions.astype(np.float64)
        lab = labels.reshape(-1).astype(np.int64)
        n, d = x.shape
        correct = 0
        for i in range(n):
            target = x[i, lab[i]]
            idx = np.arange(d)
            better = np.sum((x[i] > target) | ((x[i] == target) & (idx < lab[i])))
            correct += better < top_k
        return (np.asarray(correct / n if n else 0.0, dtype=np.float32),)

    def bind(self, inputs, outputs):
        x, label = inputs
        n = tuple(x.shape)[0]
        args = (x, label.reshape(n), int(self.args["top_k"]), outputs[0].reshape(1))
        kernel = self.kernel

        def call():
            bad = kernel(*args)
            if bad >= 0:
                value = self.read_host(label).reshape(-1)[bad]
                raise errors.ShapeError(f"label {value} at position {bad} is outside [0, {tuple(x.shape)[1]})")

        return call
