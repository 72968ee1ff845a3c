"""Hypothesis strategies for operator tests (Caffe2's ``hu.*`` names where users know them).

``tensor(avoid=(0.0,))`` pushes samples at least ``margin`` away from kinks so finite
differences stay valid (Chainer's dodge_nondifferentiable); ``devices()`` gives the ``gc``
(one device) and ``dc`` (all devices) arguments of Caffe2-style tests.
"""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np

from nbcaffe.devices import CPU, CUDA, DeviceOption


def dims(min_value=1, max_value=5):
    return st.integers(min_value=min_value, max_value=max_value)


def elements_of_type(dtype=np.float32, low=-1.0, high=1.0):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False,
                         width=min(64, dtype.itemsize * 8))
    if dtype == np.bool_:
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(min_value=max(info.min, -100), max_value=min(info.max, 100))
    raise ValueError(f"no element strategy for {dtype}")


def _dodge(array, avoid, margin):
    """Move values within ``margin`` of any kink in ``avoid`` to ``margin`` away from it."""
    if not avoid:
        return array
    out = array.copy()
    for kink in avoid:
        near = np.abs(out - kink) < margin
        out[near] = kink + np.where(out[near] >= kink, margin, -margin)
    return out.astype(array.dtype)


def arrays(shape, dtype=np.float32, elements=None, avoid=(), margin=0.02):
    dtype = np.dtype(dtype)
    strategy = hnp.arrays(dtype, shape, elements=elements if elements is not None else elements_of_type(dtype))
    if avoid and dtype.kind == "f":
        strategy = strategy.map(lambda a: _dodge(a, avoid, margin))
    return strategy


def shapes(min_dim=1, max_dim=4, min_value=1, max_value=5):
    return st.lists(dims(min_value, max_value), min_size=min_dim, max_size=max_dim).map(tuple)


def tensor(min_dim=1, max_dim=4, dtype=np.float32, elements=None, avoid=(), margin=0.02, **dims_kwargs):
    """An array of rank min_dim..max_dim, each dim 1..5 (``min_value``/``max_value``)."""
    return shapes(min_dim, max_dim, **dims_kwargs).flatmap(
        lambda shape: arrays(shape, dtype, elements, avoid, margin))


def tensor1d(min_len=1, max_len=64, dtype=np.float32, elements=None):
    return st.integers(min_len, max_len).flatmap(lambda n: arrays((n,), dtype, elements))


def tensors(n, min_dim=1, max_dim=4, dtype=np.float32, elements=None, avoid=(), margin=0.02, **dims_kwargs):
    """A list of ``n`` arrays sharing one random shape."""
    return shapes(min_dim, max_dim, **dims_kwargs).flatmap(
        lambda shape: st.lists(arrays(shape, dtype, elements, avoid, margin), min_size=n, max_size=n))


def device_options(include_cuda=True):
    """[CPU] plus [CUDA:0] when CUDA kernels can run (a GPU or the simulator)."""
    from nbcaffe import dispatch

    options = [DeviceOption(CPU)]
    if include_cuda and dispatch.cuda_available():
        options.append(DeviceOption(CUDA, 0))
    return options


def devices():
    """``{gc: one device option, dc: all device options}`` for ``@given(**devices())``."""
    options = device_options()
    return {"gc": st.sampled_from(options), "dc": st.just(options)}


def devices_cpu_only():
    cpu = DeviceOption(CPU)
    return {"gc": st.just(cpu), "dc": st.just([cpu])}


# Caffe2 spellings
gcs = devices
gcs_cpu_only = devices_cpu_only
