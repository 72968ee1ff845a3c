"""CUDAContext picks its GPU when the machine has several (simulated with a fake device list;
the simulator itself has one device)."""

import numpy as np
import pytest

pytestmark = pytest.mark.cuda


class _FakeGpu:
    def __init__(self, index, log):
        self.index, self.log = index, log

    def __enter__(self):
        self.log.append(("enter", self.index))
        return self

    def __exit__(self, *exc):
        self.log.append(("exit", self.index))
        return False


class _FakeGpus(list):
    pass


def _context_with_two_gpus(monkeypatch, device_id):
    from nbcaffe import dispatch

    if not dispatch.cuda_available():
        pytest.skip("CUDA kernels cannot run here: no GPU and NUMBA_ENABLE_CUDASIM=1 was not set")
    import importlib

    # nbcaffe.cuda.context is also the name of a function in nbcaffe.cuda: import the module
    cuda_context = importlib.import_module("nbcaffe.cuda.context")
    log = []
    fake = _FakeGpus([_FakeGpu(0, log), _FakeGpu(1, log)])
    monkeypatch.setattr(cuda_context.cuda, "gpus", fake)
    return cuda_context.CUDAContext(device_id), log


def test_multi_gpu_context_allocates_uploads_and_launches_on_its_device(monkeypatch):
    ctx, log = _context_with_two_gpus(monkeypatch, 1)
    y = ctx.empty((3,), np.float32)
    x = ctx.from_host(np.arange(3, dtype=np.float32))
    assert log == [("enter", 1), ("exit", 1)] * 2
    log.clear()
    calls = []
    wrapped = ctx.wrap_call(lambda: calls.append(len(log)) or "ran")
    assert wrapped() == "ran" and calls == [1]  # the call ran while GPU 1 was current
    assert log == [("enter", 1), ("exit", 1)]
    assert ctx.to_host(x).tolist() == [0.0, 1.0, 2.0] and tuple(y.shape) == (3,)


def test_single_gpu_context_adds_nothing_to_the_launch_path():
    from nbcaffe import dispatch

    if not dispatch.cuda_available():
        pytest.skip("CUDA kernels cannot run here: no GPU and NUMBA_ENABLE_CUDASIM=1 was not set")
    from nbcaffe.cuda.context import CUDAContext

    ctx = CUDAContext(0)

    def call():
        return 1

    assert ctx.wrap_call(call) is call
