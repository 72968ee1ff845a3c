"""Collective communication across processes: CreateCommonWorld, CloneCommonWorld,
DestroyCommonWorld, Allreduce, Broadcast, Allgather, Barrier.

Caffe2 shipped these as gloo operators (``engine="GLOO"``, no default engine).  Here the
default engine runs them on a *common world* from :mod:`nbcaffe.distributed`: MPI through
mpi4py when the job was started by ``mpiexec``, or a one-process :class:`LocalWorld`
otherwise.  An OperatorDef that asks for ``engine="GLOO"`` falls back to that default kernel,
so Caffe2 nets run unchanged.  The op schemas are Caffe2's: the world is input 0, tensors
follow, and Allreduce/Broadcast work in place (output i is input i + 1).

With several tensor inputs, Allreduce sums all of them on every rank (the copies of one
gradient on the local devices) and writes the total to each; Broadcast sends the root rank's
*first* tensor to every tensor of every rank; Allgather concatenates every input of every rank
(rank-major) into one flat output, as gloo did.  The CUDA kernels (nbcaffe/cuda/collective.py)
stage device tensors through host memory unless the MPI library is CUDA-aware.

The NumPy references do the local arithmetic in NumPy and use the world only for the
exchange, so the REFERENCE engine is correct in multi-process jobs too.
"""

from __future__ import annotations

import functools

import numpy as np

from nbcaffe import distributed, errors
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

# Caffe2/gloo arguments that configure a transport MPI does not need.
TRANSPORT_ARGS = ("sync", "transport", "interface", "mpi_rendezvous", "status_blob", "gpu_direct")


def _noop():
    pass


def _as_world(value):
    """The world object (test harnesses may wrap host objects in 0-d object arrays)."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        return value.item()
    return value


def _world(value, op):
    value = _as_world(value)
    if not isinstance(value, distributed.CommonWorld):
        raise errors.ShapeError(f"{op.where()}: input 0 '{op.input_names[0]}' must be a common world from"
                                f" CreateCommonWorld, got {type(value).__name__}")
    return value


def _unknown_shape(*_args):
    from nbcaffe.shape_inference import UnknownShape

    raise UnknownShape()


# ----------------------------------------------------------------------------- worlds


def create_common_world_cpu(args, name):
    """A new common world for CreateCommonWorld's arguments (see distributed.create_world)."""
    timeout = args["timeout_ms"] / 1000.0 if args["timeout_ms"] > 0 else None
    size = args["size"] if args["size"] > 0 else None
    rank = args["rank"] if args["rank"] >= 0 else None
    return distributed.create_world(size, rank, timeout, name)


class _WorldMaker(Operator):
    """Base of the ops whose output is a common world object (made again on every run)."""

    outputs = ("comm_world",)
    gradient = None
    opaque_outputs = True
    values_dependent = True
    input_device = "any"
    static_infer = classmethod(_unknown_shape)

    def make(self, inputs):
        raise NotImplementedError

    def function(self):
        """The registered kernel (the CPU one under the REFERENCE engine: same Python code)."""
        return self.kernel if callable(self.kernel) else type(self).cpu

    def prepare(self, inputs):
        self._call = _noop
        return [self.make(inputs)]


@register_op
class CreateCommonWorld(_WorldMaker):
    """comm_world = a process group of ``size`` processes in which this one is ``rank``.

    Under ``mpiexec`` the world is MPI's (size and rank, when given, must match the launch);
    otherwise a one-process world.  ``kv_handler`` (Caffe2's rendezvous store) is accepted and
    not needed: MPI does the rendezvous.  ``timeout_ms`` bounds every collective on the world
    (default ``NBCAFFE_COLLECTIVE_TIMEOUT`` or 300 s); past it the op raises
    CollectiveTimeoutError instead of waiting forever."""

    inputs = ("kv_handler",)
    num_inputs = (0, 1)
    args = {"size": Arg("int", 0, "processes in the world (0: as launched)"),
            "rank": Arg("int", -1, "this process's rank (-1: as launched)"),
            "timeout_ms": Arg("int", -1, "deadline of each collective in ms (-1: the default)")}
    ignored_args = TRANSPORT_ARGS
    cpu = staticmethod(create_common_world_cpu)

    @staticmethod
    def reference(*kv_handler, size=0, rank=-1, timeout_ms=-1):
        return (distributed.LocalWorld(),)

    def make(self, inputs):
        return self.function()(self.args, self.output_names[0])


def clone_common_world_cpu(world, name):
    return world.clone(name)


@register_op
class CloneCommonWorld(_WorldMaker):
    """comm_world = a new world with the same processes as existing_comm_world (an MPI
    communicator duplicate: collectives on the two never mix)."""

    inputs = ("existing_comm_world",)
    ignored_args = TRANSPORT_ARGS
    cpu = staticmethod(clone_common_world_cpu)

    @staticmethod
    def reference(existing_comm_world):
        return (_as_world(existing_comm_world).clone(),)

    def make(self, inputs):
        return self.function()(_world(inputs[0], self), self.output_names[0])


def destroy_common_world_cpu(world):
    world.destroy()


@register_op
class DestroyCommonWorld(Operator):
    """Release the world's communicator; the blob keeps a world that refuses collectives."""

    inputs, outputs = ("common_world",), ("common_world",)
    enforce_inplace = {0: 0}
    inplace = {0: 0}
    gradient = None
    opaque_outputs = True
    values_dependent = True
    input_device = "any"
    static_infer = classmethod(_unknown_shape)
    cpu = staticmethod(destroy_common_world_cpu)

    @staticmethod
    def reference(common_world):
        return (_as_world(common_world),)

    def prepare(self, inputs):
        world = _world(inputs[0], self)
        self._call = functools.partial(self.kernel if callable(self.kernel) else destroy_common_world_cpu, world)
        return [world]


# ----------------------------------------------------------------------------- collectives


class _Collective(Operator):
    """Input 0 is the world, inputs 1.. are tensors of one shape and dtype; output j is input
    j + 1 (in place) unless the op says otherwise."""

    inputs, outputs = ("comm_world", "X"), ("Y",)
    num_inputs = (2, None)
    num_outputs = (1, None)
    inplace = {1: 0}
    enforce_inplace = {1: 0}
    gradient = None
    input_device = {0: "any"}
    ignored_args = TRANSPORT_ARGS

    def _inplace_allowed(self, i, j):
        return i == j + 1

    def setup(self):
        if len(self.output_names) != len(self.input_names) - 1:
            raise errors.SchemaError(f"{self.where()}: needs one output per tensor input ({len(self.input_names) - 1}),"
                                     f" got {len(self.output_names)}")
        for j, name in enumerate(self.output_names):
            if name != self.input_names[j + 1]:
                raise errors.SchemaError(f"{self.where()}: runs in place, so output {j} must be input {j + 1}"
                                         f" '{self.input_names[j + 1]}', not '{name}'")

    @staticmethod
    def infer(args, shapes, dtypes):
        return list(shapes[1:]), list(dtypes[1:])

    def tensors(self, inputs):
        """The tensor inputs, checked to share one shape and dtype."""
        xs = inputs[1:]
        first = xs[0]
        for i, x in enumerate(xs[1:], start=2):
            if tuple(x.shape) != tuple(first.shape) or x.dtype != first.dtype:
                raise errors.ShapeError(
                    f"{self.where()}: every tensor must match input 1 '{self.input_names[1]}'"
                    f" {tuple(first.shape)} {np.dtype(first.dtype).name}; input {i} '{self.input_names[i]}' is"
                    f" {tuple(x.shape)} {np.dtype(x.dtype).name}")
        return tuple(xs)

    def bind(self, inputs, outputs):
        return functools.partial(self.kernel, _world(inputs[0], self), self.tensors(inputs), tuple(outputs))


def allreduce_cpu(world, xs, ys):
    """Every y = the sum of all xs over all ranks (ys are the xs: in place)."""
    total = xs[0]
    for x in xs[1:]:
        np.add(total, x, out=total)
    world.allreduce_(total)
    for y in ys[1:]:
        np.copyto(y, total)


@register_op
class Allreduce(_Collective):
    """Y_i = sum over ranks r and tensor inputs k of X_k(r), for every i (in place: Y_i is X_i)."""

    cpu = staticmethod(allreduce_cpu)

    @staticmethod
    def reference(comm_world, *X):
        total = np.sum(np.stack(X), axis=0).astype(X[0].dtype)
        _as_world(comm_world).allreduce_(total)
        return tuple(total.copy() for _ in X)


def broadcast_cpu(world, xs, ys, root):
    """Every y = the first x of rank ``root``."""
    world.broadcast_(xs[0], root)
    for y in ys[1:]:
        np.copyto(y, xs[0])


@register_op
class Broadcast(_Collective):
    """Y_i = X_1 of rank ``root``, on every rank and for every i (in place: Y_i is X_i)."""

    args = {"root": Arg("int", 0, "the rank whose first tensor is sent")}

    cpu = staticmethod(broadcast_cpu)

    @staticmethod
    def reference(comm_world, *X, root=0):
        value = X[0].copy()
        _as_world(comm_world).broadcast_(value, root)
        return tuple(value.copy() for _ in X)

    def bind(self, inputs, outputs):
        return functools.partial(super().bind(inputs, outputs), self.args["root"])


def allgather_cpu(world, xs, y):
    """y = every rank's xs, flattened and concatenated (rank-major)."""
    send = xs[0] if len(xs) == 1 else np.concatenate([x.reshape(-1) for x in xs])
    world.allgather(send, y)


@register_op
class Allgather(_Collective):
    """Y = concat over ranks r, then tensor inputs k, of X_k(r) flattened: a 1-D tensor of
    size * (number of inputs) * X.size elements, identical on every rank."""

    num_outputs = 1
    inplace = {}
    enforce_inplace = {}
    values_dependent = False
    static_infer = classmethod(_unknown_shape)
    cpu = staticmethod(allgather_cpu)

    def _inplace_allowed(self, i, j):
        return False

    def setup(self):
        pass

    def output_spec(self, inputs):
        world = _world(inputs[0], self)
        xs = self.tensors(inputs)
        return [(world.size * len(xs) * int(np.prod(xs[0].shape, dtype=np.int64)),)], [xs[0].dtype]

    @staticmethod
    def reference(comm_world, *X):
        world = _as_world(comm_world)
        send = np.concatenate([x.reshape(-1) for x in X])
        out = np.empty(world.size * send.size, dtype=send.dtype)
        world.allgather(send, out)
        return (out,)

    def bind(self, inputs, outputs):
        return functools.partial(self.kernel, _world(inputs[0], self), self.tensors(inputs), outputs[0])


def barrier_cpu(world):
    world.barrier()


@register_op
class Barrier(Operator):
    """Wait until every rank of the world has reached this op (no outputs)."""

    inputs, outputs = ("comm_world",), ()
    gradient = None
    input_device = "any"
    ignored_args = TRANSPORT_ARGS
    cpu = staticmethod(barrier_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [], []

    @staticmethod
    def reference(comm_world):
        _as_world(comm_world).barrier()
        return ()

    def bind(self, inputs, outputs):
        return functools.partial(self.kernel, _world(inputs[0], self))
