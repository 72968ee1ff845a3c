"""CPU threads: nbcaffe's task pool, its parallel GEMM, and the BLAS thread policy.

One pool owns the cores.  CPU kernels split their work into independent tasks (chunks of
images, row blocks of a GEMM) and run them with :func:`run_tasks` on a small pool of Python
threads; the numba kernels are compiled ``nogil`` and NumPy's BLAS releases the GIL, so the
tasks really run in parallel.  BLAS itself runs single-threaded *while a net runs*
(:class:`cpu_region`, entered by every net and operator run) and multi-threaded again once
control returns to the user, so a user's own NumPy code keeps OpenBLAS's threads.

Why not let OpenBLAS thread each call?  Measured on the 2-core machine
(docs/design.md, "CPU threads"):

* after a 2-thread OpenBLAS call, OpenBLAS's idle worker spins on a core for about 0.1 s;
  any other parallel kernel that follows (im2col, pooling, an update) then gets one core
  instead of two.  Mixing the two thread pools cost the LeNet training step 27 ms instead
  of 18 ms;
* two 1-thread GEMMs over row halves run as fast as one 2-thread GEMM (FC 1024³:
  ``benchmarks/bench_gemm.py``), and the im2col / bias / pooling passes between the GEMMs
  use both cores too;
* under a co-tenant that takes a core, the pool's dynamic task queue degrades gracefully
  where OpenBLAS's static two-way split waits for the slow half.

``NBCAFFE_NUM_THREADS`` (or :func:`set_num_threads`) caps the pool; 1 runs every task on the
calling thread.  Results can depend on the thread count (a GEMM split into a different
number of row blocks may round differently) but never on timing: task boundaries are fixed
by the sizes and the thread count alone.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

# GEMMs below this many multiply-adds run as one BLAS call: waking a pool thread costs
# ~20-40 µs, which is what 2 MFLOP take on one core.
PARALLEL_GEMM_MIN_MACS = 1 << 20


class _OpenBlasControl:
    """Thread-count setters of every OpenBLAS library in the process (NumPy's, SciPy's)."""

    def __init__(self):
        self.libs = []  # (name, get, set)
        try:
            self._load()
        except Exception:  # noqa: BLE001  (no control: kernels then run their tasks sequentially)
            self.libs = []

    def _load(self):
        paths = []
        maps = "/proc/self/maps"
        if os.path.exists(maps):
            with open(maps) as handle:
                for line in handle:
                    path = line.split()[-1] if "/" in line else ""
                    if "openblas" in os.path.basename(path).lower() and path not in paths:
                        paths.append(path)
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    put.restype, put.argtypes = None, [ctypes.c_int]
                    self.libs.append((os.path.basename(path), get, put))
                    break

    @property
    def name(self) -> str:
        return ", ".join(name for name, _, _ in self.libs) or "none found"

    def single(self):
        """Switch every library to one thread; return what to restore."""
        saved = []
        for _, get, put in self.libs:
            count = get()
            saved.append(count)
            if count != 1:
                put(1)
        return saved

    def restore(self, saved):
        for (_, _, put), count in zip(self.libs, saved):
            if count != 1:
                put(count)


_BLAS = None
_POOL = None
_POOL_LOCK = threading.Lock()
_THREADS = max(1, int(os.environ.get("NBCAFFE_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1))


def _blas() -> _OpenBlasControl:
    global _BLAS
    if _BLAS is None:
        _BLAS = _OpenBlasControl()  # NumPy is imported above, so its BLAS is loaded
    return _BLAS


def blas_libraries() -> str:
    """The OpenBLAS libraries whose thread count nbcaffe controls (for benchmark headers)."""
    return _blas().name


def get_num_threads() -> int:
    """Threads nbcaffe's CPU kernels use (1 when BLAS threads cannot be controlled)."""
    return _THREADS if _blas().libs else 1


num_threads = get_num_threads


def set_num_threads(n: int) -> None:
    """Cap nbcaffe's CPU threads (like ``torch.set_num_threads``); n >= 1."""
    global _THREADS, _POOL
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    with _POOL_LOCK:
        if n != _THREADS and _POOL is not None:
            _POOL.shutdown(wait=True)
            _POOL = None
        _THREADS = n


# ------------------------------------------------------------------------ BLAS policy

_REGION_LOCK = threading.Lock()
_REGION_DEPTH = 0
_REGION_SAVED = None


class cpu_region:  # noqa: N801  (used like a function: ``with threads.cpu_region():``)
    """While any region is open, OpenBLAS runs single-threaded (nbcaffe's pool parallelises).

    Nets, plans and single operator runs enter one; regions nest and may be entered from
    several threads.  The thread counts the user had are restored when the last one closes.
    """

    __slots__ = ()

    def __enter__(self):
        global _REGION_DEPTH, _REGION_SAVED
        with _REGION_LOCK:
            if _REGION_DEPTH == 0:
                _REGION_SAVED = _blas().single()
            _REGION_DEPTH += 1
        return self

    def __exit__(self, *exc):
        global _REGION_DEPTH, _REGION_SAVED
        with _REGION_LOCK:
            _REGION_DEPTH -= 1
            if _REGION_DEPTH == 0:
                _blas().restore(_REGION_SAVED)
                _REGION_SAVED = None
        return False


REGION = cpu_region()


# ------------------------------------------------------------------------ task pool


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=max(1, _THREADS - 1), thread_name_prefix="nbcaffe-cpu")
        return _POOL


def run_tasks(task, n_tasks, n_workers):
    """Run ``task(i, worker)`` for i in range(n_tasks) on up to ``n_workers`` threads.

    ``worker`` (0 .. n_workers-1) selects per-thread scratch.  Tasks are handed out from a
    shared counter (dynamic scheduling); the caller's thread is worker 0.  BLAS calls inside
    the tasks run single-threaded (a :class:`cpu_region` is held for the duration).
    """
    n_workers = max(1, min(n_workers, n_tasks, get_num_threads()))
    if n_workers == 1:
        for i in range(n_tasks):
            task(i, 0)
        return
    counter = iter(range(n_tasks))
    lock = threading.Lock()

    def work(worker):
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            task(i, worker)

    with REGION:
        futures = [_pool().submit(work, w) for w in range(1, n_workers)]
        error = None
        try:
            work(0)
        except BaseException as exc:  # noqa: BLE001  (re-raised after the other workers stop)
            error = exc
        for future in futures:
            if future.cancel():  # the caller ran every task before this worker woke up
                continue
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001
                error = error or exc
        if error is not None:
            raise error


def matmul(a, b, out):
    """out (M, N) = a (M, K) @ b (K, N) with BLAS, split into row (or column) blocks over the
    pool when the product is large enough.  ``a``/``b`` may be transposed views; ``out`` is a
    C-contiguous array of the result dtype."""
    m, k = a.shape
    n = b.shape[1]
    workers = get_num_threads()
    if workers == 1 or m * n * k < PARALLEL_GEMM_MIN_MACS or max(m, n) < 2 * workers:
        np.dot(a, b, out=out)
        return
    if m >= n:  # row blocks: contiguous pieces of out
        step = -(-m // workers)

        def rows(i, _worker):
            lo = i * step
            np.dot(a[lo:lo + step], b, out=out[lo:lo + step])

        run_tasks(rows, -(-m // step), workers)
    else:  # column blocks: strided pieces of out, which np.matmul still hands to BLAS
        step = -(-n // workers)

        def cols(i, _worker):
            lo = i * step
            np.matmul(a, b[:, lo:lo + step], out=out[:, lo:lo + step])

        run_tasks(cols, -(-n // step), workers)


def batch_matmul(a, b, out):
    """out (B..., M, N) = a (B..., M, K) @ b (B..., K, N), NumPy broadcasting over the batch
    dims.  Large products whose operands carry the full leading batch dim are split into
    blocks of that dim over the pool; anything else is one ``np.matmul`` call."""
    workers = get_num_threads()
    lead = out.shape[0] if out.ndim > 2 else 1
    macs = out.size * a.shape[-1]
    if (workers == 1 or macs < PARALLEL_GEMM_MIN_MACS or lead < 2
            or a.ndim != out.ndim or b.ndim != out.ndim or a.shape[0] != lead or b.shape[0] != lead):
        if out.ndim == 2:
            matmul(a, b, out)
        else:
            np.matmul(a, b, out=out)
        return
    step = -(-lead // workers)

    def blocks(i, _worker):
        lo = i * step
        np.matmul(a[lo:lo + step], b[lo:lo + step], out=out[lo:lo + step])

    run_tasks(blocks, -(-lead // step), workers)
