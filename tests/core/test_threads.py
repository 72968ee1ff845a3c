"""nbcaffe.threads: the parallel GEMM, the task pool and the BLAS thread policy."""

import threading

import numpy as np
import pytest

from nbcaffe import core, threads, workspace


@pytest.mark.parametrize("shape", [(64, 50, 37), (9, 40, 300), (301, 7, 5)])
@pytest.mark.parametrize("transpose", [False, True])
def test_matmul_blocks_match_numpy(monkeypatch, shape, transpose):
    monkeypatch.setattr(threads, "PARALLEL_GEMM_MIN_MACS", 1)  # force the split on small shapes
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if transpose else (m, k))
    b = rng.standard_normal((n, k) if transpose else (k, n))
    a_op, b_op = (a.T, b.T) if transpose else (a, b)
    out = np.full((m, n), np.nan)
    threads.matmul(a_op, b_op, out)
    np.testing.assert_allclose(out, a_op @ b_op, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("a_batch, b_batch", [(5, 5), (1, 5), (5, 1)])
def test_batch_matmul_blocks_match_numpy(monkeypatch, a_batch, b_batch):
    monkeypatch.setattr(threads, "PARALLEL_GEMM_MIN_MACS", 1)  # force the split on small shapes
    rng = np.random.default_rng(1)
    a = rng.standard_normal((a_batch, 7, 6))
    b = rng.standard_normal((b_batch, 9, 6)).swapaxes(-1, -2)  # a transposed (strided) operand
    out = np.full((5, 7, 9), np.nan)
    threads.batch_matmul(a, b, out)
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-12, atol=1e-12)


def test_matmul_ops_split_over_the_pool(monkeypatch):
    """MatMul and BatchMatMul go through the pool's GEMM split (a 2-thread speed path)."""
    monkeypatch.setattr(threads, "PARALLEL_GEMM_MIN_MACS", 1)
    calls = []
    real = threads.run_tasks
    monkeypatch.setattr(threads, "run_tasks", lambda *a: calls.append(a[1]) or real(*a))
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 8, 5)).astype(np.float32), rng.standard_normal((3, 5, 4)).astype(np.float32)
    workspace.ResetWorkspace()
    workspace.FeedBlob("a", a)
    workspace.FeedBlob("b", b)
    workspace.FeedBlob("a2", a[0])
    workspace.FeedBlob("b2", b[0])
    net = core.Net("mm_split")
    net.BatchMatMul(["a", "b"], "y")
    net.MatMul(["a2", "b2"], "y2")
    if threads.get_num_threads() < 2:
        pytest.skip("one CPU thread: nothing to split")
    workspace.RunNetOnce(net)
    assert len(calls) == 2, calls
    np.testing.assert_allclose(workspace.FetchBlob("y"), a @ b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(workspace.FetchBlob("y2"), a[0] @ b[0], rtol=1e-5, atol=1e-6)


def test_run_tasks_runs_every_task_once_and_reraises():
    seen = []
    lock = threading.Lock()

    def task(i, worker):
        assert 0 <= worker < max(threads.get_num_threads(), 1)
        with lock:
            seen.append(i)

    threads.run_tasks(task, 37, 4)
    assert sorted(seen) == list(range(37))

    def failing(i, _worker):
        if i == 5:
            raise ValueError("task 5 failed")

    with pytest.raises(ValueError, match="task 5 failed"):
        threads.run_tasks(failing, 12, 4)


def test_cpu_region_sets_blas_to_one_thread_and_restores():
    blas = threads._blas()
    if not blas.libs:
        pytest.skip("no OpenBLAS found in this process: nothing to control")
    _, get, put = blas.libs[0]
    before = get()
    put(2)
    try:
        with threads.cpu_region():
            assert get() == 1
            with threads.cpu_region():  # nested: still one thread
                assert get() == 1
            assert get() == 1
        assert get() == 2
    finally:
        put(before)


def test_net_run_restores_user_blas_threads():
    blas = threads._blas()
    if not blas.libs:
        pytest.skip("no OpenBLAS found in this process: nothing to control")
    _, get, put = blas.libs[0]
    before = get()
    put(2)
    try:
        ws = workspace.Workspace()
        ws.feed_blob("x", np.ones((4, 3), np.float32))
        net = core.Net("relu")
        net.Relu("x", "y")
        ws.run_net_once(net)
        assert get() == 2
    finally:
        put(before)


def test_set_num_threads_validates_and_applies():
    old = threads._THREADS
    with pytest.raises(ValueError, match="at least 1"):
        threads.set_num_threads(0)
    try:
        threads.set_num_threads(1)
        assert threads.get_num_threads() == 1
        out = np.empty((8, 8))
        a = np.arange(64.0).reshape(8, 8)
        threads.matmul(a, a, out)
        np.testing.assert_allclose(out, a @ a)
    finally:
        threads.set_num_threads(old)
