"""brew.sum, transpose, batch_mat_mul: parameter-free algebra layers."""

from __future__ import annotations

from nbcaffe.helpers.tools import add_op, engine_hints


def sum(model, blob_in, blob_out, **kwargs):  # noqa: A001  (Caffe2's helper name)
    """Add ``Sum(blob_in) -> blob_out``: the elementwise sum of same-shape inputs (may run in
    place on the first input).

    Args:
        model: the ModelHelper.
        blob_in: list of input blobs.
        blob_out: output name.
        **kwargs: passed to the op.

    Returns:
        BlobReference of the sum.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="sum_doc")
        >>> str(sum(m, ["branch1", "branch2"], "res"))
        'res'
    """
    return add_op(model.net, "Sum", blob_in, blob_out, **kwargs)


def transpose(model, blob_in, blob_out, use_cudnn=False, **kwargs):
    """Add ``Transpose(blob_in, axes) -> blob_out`` (default axes: reversed).

    Args:
        model: the ModelHelper.
        blob_in: input.
        blob_out: output name.
        use_cudnn: request engine CUDNN (from the model's arg_scope).
        **kwargs: ``axes``: the permutation.

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="transpose_doc")
        >>> str(transpose(m, "nchw", "nhwc", axes=[0, 2, 3, 1]))
        'nhwc'
    """
    return add_op(model.net, "Transpose", blob_in, blob_out, **engine_hints(kwargs, use_cudnn))


def batch_mat_mul(model, blob_in, blob_out, enable_tensor_core=False, **kwargs):
    """Add ``BatchMatMul([A, B]) -> blob_out``: matrix products over the leading (batch) dims.

    Args:
        model: the ModelHelper.
        blob_in: ``[A, B]``.
        blob_out: output name.
        enable_tensor_core: request engine TENSORCORE (falls back to the default kernel).
        **kwargs: ``trans_a``, ``trans_b``, ``broadcast``.

    Returns:
        BlobReference of the product.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="bmm_doc")
        >>> str(batch_mat_mul(m, ["q", "k"], "scores", trans_b=1))
        'scores'
    """
    if enable_tensor_core:
        kwargs["engine"] = "TENSORCORE"
    return add_op(model.net, "BatchMatMul", blob_in, blob_out, **kwargs)
