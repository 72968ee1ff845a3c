"""CUDA kernels for nbcaffe/ops/fill.py.

Random fills use a counter-based generator: element i of draw number ``counter`` is a hash
of (seed, counter, i), so any thread can produce any element independently and each run
advances ``counter`` for fresh values.  The hash (Wellons' lowbias32 in 32-bit lanes held in
int64 and masked) behaves the same compiled and under the simulator, where Python ints do
not wrap.
"""

from __future__ import annotations

import math
import os

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for, copy_launch
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

MASK32 = 0xFFFFFFFF


@cuda.jit(device=True)
def hash32(x):
    """lowbias32: a well-mixed 32-bit integer hash (x in [0, 2**32))."""
    x = int(x) & MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    x ^= x >> 16
    return x


@cuda.jit(device=True)
def uniform01(seed, counter, i, stream):
    """A float64 in (0, 1) from (seed, counter, element i, stream)."""
    h = hash32(hash32(hash32(seed ^ (stream * 0x9E3779B9 & MASK32)) ^ (counter & MASK32)) ^ (i & MASK32))
    h2 = hash32(h ^ ((i >> 32) & MASK32) ^ 0x68E31DA4)
    return ((h >> 8) * 16777216.0 + (h2 >> 8) + 0.5) / 281474976710656.0  # 48 random bits


class CounterRNG:
    """Seed plus a draw counter; ``next()`` returns the counter for one kernel launch."""

    def __init__(self, seed=None):
        self.seed = (int.from_bytes(os.urandom(4), "little") if seed is None else int(seed)) & MASK32
        self.counter = 0

    def next(self):
        self.counter += 1
        return self.counter


@cuda.jit
def constant_fill_kernel(y, value):
    """y[i] = value."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = value


@cuda.jit
def uniform_kernel(y, lo, hi, seed, counter):
    """y[i] = lo + (hi - lo) * U(0, 1)."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = lo + (hi - lo) * uniform01(seed, counter, i, 0)


@cuda.jit
def uniform_int_kernel(y, lo, hi, seed, counter):
    """y[i] = an integer in [lo, hi]."""
    span = hi - lo + 1
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        k = int(uniform01(seed, counter, i, 0) * span)
        y[i] = lo + (k if k < span else span - 1)


@cuda.jit
def gaussian_kernel(y, mean, std, seed, counter):
    """y[i] = mean + std * N(0, 1) by Box-Muller on two independent uniforms."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        u1 = uniform01(seed, counter, i, 1)
        u2 = uniform01(seed, counter, i, 2)
        y[i] = mean + std * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@register_kernel("ConstantFill", CUDA)
def constant_fill_launch(y, value):
    constant_fill_kernel[blocks_for(y.size), THREADS](y, value)


def uniform_launch(rng, y, lo, hi):
    uniform_kernel[blocks_for(y.size), THREADS](y, lo, hi, rng.seed, rng.next())


def uniform_int_launch(rng, y, lo, hi):
    uniform_int_kernel[blocks_for(y.size), THREADS](y, lo, hi, rng.seed, rng.next())


def gaussian_launch(rng, y, mean, std):
    gaussian_kernel[blocks_for(y.size), THREADS](y, mean, std, rng.seed, rng.next())


register_kernel("UniformFill", CUDA)(uniform_launch)
register_kernel("UniformIntFill", CUDA)(uniform_int_launch)
register_kernel("GaussianFill", CUDA)(gaussian_launch)
register_kernel("XavierFill", CUDA)(uniform_launch)
register_kernel("MSRAFill", CUDA)(gaussian_launch)


def given_fill_launch(values, y):
    """values: device array already in y's dtype (uploaded once at bind)."""
    copy_launch(values, y)


for _name in ("GivenTensorFill", "GivenTensorDoubleFill", "GivenTensorIntFill", "GivenTensorInt16Fill",
              "GivenTensorInt64Fill", "GivenTensorBoolFill"):
    register_kernel(_name, CUDA)(given_fill_launch)
