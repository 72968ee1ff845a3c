"""The ONNX backend on the CUDA device: a selection of ONNX backend-suite node cases (one or two
per converter family) run with ``prepare(model, "CUDA")``.  Marked ``cuda``: a GPU, or the
simulator (``NUMBA_ENABLE_CUDASIM=1``); shapes are the suite's own (tiny)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx.backend.test.loader import load_model_tests  # noqa: E402
from onnx.backend.test.runner import Runner  # noqa: E402

from nbcaffe.onnx import backend  # noqa: E402

SELECTION = [
    "test_relu", "test_add_bcast", "test_where_example", "test_slice", "test_softmax_axis_1",
    "test_logsoftmax_axis_1", "test_conv_with_strides_padding", "test_maxpool_2d_pads", "test_averagepool_2d_ceil",
    "test_batchnorm_example", "test_gemm_default_matrix_bias", "test_matmul_3d", "test_reduce_sum_keepdims_example",
    "test_argmax_default_axis_example",
    "test_resize_upsample_scales_linear", "test_edge_pad", "test_expand_dim_changed", "test_tile",
    "test_concat_3d_axis_1", "test_split_equal_parts_1d_opset18", "test_transpose_default", "test_gather_0",
    "test_greater_bcast", "test_and_bcast3v1d", "test_sin", "test_floor", "test_erf", "test_selu", "test_gelu_tanh_1",
    "test_clip", "test_cast_FLOAT_to_DOUBLE", "test_range_float_type_positive_delta", "test_shape",
    "test_layer_normalization_2d_axis0", "test_depthtospace_crd_mode_example",
]


def _cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_name = {c.name: c for c in load_model_tests(kind="node")}
    return [by_name[n] for n in SELECTION]


def _array(x):
    return onnx.numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


@pytest.mark.cuda
@pytest.mark.parametrize("case", _cases(), ids=SELECTION)
def test_node_case_on_cuda(case):
    rep = backend.prepare(case.model, "CUDA")
    for inputs, refs in case.data_sets:
        arrays = [_array(x) for x in inputs]
        refs = [_array(x) for x in refs]
        Runner.assert_similar_outputs(refs, rep.run(arrays), rtol=case.rtol, atol=case.atol)
