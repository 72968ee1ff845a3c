"""benchmarks/bench_inference.py runs end to end on one small model (both frameworks, outputs
compared, ratio printed)."""

from __future__ import annotations

import importlib.util

import pytest

from tests._paths import REPO, shared_data


def test_inference_benchmark_runs_one_model(capsys):
    pytest.importorskip("onnxruntime")
    shared_data("caffe1", "mtcnn")
    spec = importlib.util.spec_from_file_location("bench_inference", REPO / "benchmarks" / "bench_inference.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--models", "mtcnn_pnet", "--batches", "2", "--rounds", "1", "--reps", "1",
                       "--min-seconds", "0", "--pause", "0"]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("mtcnn_pnet")]
    nbcaffe_ms, ort_ms, ratio, diff = (float(v) for v in row.split()[2:6])
    assert nbcaffe_ms > 0 and ort_ms > 0 and diff < 1e-5
    assert "geometric mean ratio" in out
