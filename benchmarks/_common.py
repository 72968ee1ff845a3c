"""Timing helpers shared by the benchmarks: medians, background load, machine header."""

from __future__ import annotations

import os
import platform
import statistics
import time


def cpu_times():
    with open("/proc/stat") as handle:
        fields = handle.readline().split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]
    return sum(values), idle


class LoadMeter:
    """Share of all CPUs used by *other* processes while the block ran (0..1), from /proc/stat."""

    def __enter__(self):
        self.total0, self.idle0 = cpu_times()
        self.own0 = time.process_time()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        total1, idle1 = cpu_times()
        ticks = max(1, total1 - self.total0)
        busy = (ticks - (idle1 - self.idle0)) / ticks
        wall = time.perf_counter() - self.wall0
        own = (time.process_time() - self.own0) / max(wall, 1e-9) / (os.cpu_count() or 1)
        self.background = max(0.0, busy - own)
        return False


def median_time(fn, repeats=7, number=1, warmup=1):
    """Median and best seconds per call of ``fn`` over ``repeats`` samples of ``number`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples), min(samples)


def header() -> str:
    import numba
    import numpy

    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"# {platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
            f"python {platform.python_version()} | numpy {numpy.__version__} | numba {numba.__version__} | "
            f"load avg {load1:.2f}")
