"""brew.max_pool, average_pool, max_pool_with_index: pooling layers (no parameters)."""

from __future__ import annotations

from nbcaffe.helpers.tools import add_op, check_order, engine_hints


def max_pool(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """Add ``MaxPool(blob_in) -> blob_out``.

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, H, W) for NCHW, (N, H, W, C) for NHWC.
        blob_out: output name.
        use_cudnn: request engine CUDNN (falls back to the default kernel here).
        order: "NCHW" or "NHWC" (from the model's arg_scope).
        **kwargs: MaxPool arguments: ``kernel`` (or ``kernel_h``/``kernel_w``/``kernels``),
            ``stride``, ``pad``, ``global_pooling``, ``legacy_pad``...

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="max_pool_doc")
        >>> str(max_pool(m, "conv1", "pool1", kernel=2, stride=2))
        'pool1'
    """
    check_order(order, "max_pool")
    return add_op(model.net, "MaxPool", blob_in, blob_out, order=order, **engine_hints(kwargs, use_cudnn))


def average_pool(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """Add ``AveragePool(blob_in) -> blob_out`` (the divisor excludes padding, as in Caffe2).

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, H, W) for NCHW, (N, H, W, C) for NHWC.
        blob_out: output name.
        use_cudnn: request engine CUDNN (falls back to the default kernel here).
        order: "NCHW" or "NHWC" (from the model's arg_scope).
        **kwargs: AveragePool arguments (``kernel``, ``stride``, ``pad``, ``global_pooling``...).

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="avg_pool_doc")
        >>> str(average_pool(m, "res5", "pool5", global_pooling=1))
        'pool5'
    """
    check_order(order, "average_pool")
    return add_op(model.net, "AveragePool", blob_in, blob_out, order=order, **engine_hints(kwargs, use_cudnn))


def max_pool_with_index(model, blob_in, blob_out, order="NCHW", **kwargs):
    """Add ``MaxPoolWithIndex(blob_in) -> [blob_out, <blob_out>_index]`` (Caffe2 had it on the
    GPU only); returns the pooled output.

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, H, W).
        blob_out: output name; the argmax indices go to ``<blob_out>_index``.
        order: "NCHW" (from the model's arg_scope).
        **kwargs: pooling arguments (``kernel``, ``stride``, ``pad``...).

    Returns:
        BlobReference of the pooled output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="mpi_doc")
        >>> y = max_pool_with_index(m, "x", "p", kernel=2, stride=2)
        >>> list(m.net.Proto().op[0].output)
        ['p', 'p_index']
    """
    check_order(order, "max_pool_with_index")
    return add_op(model.net, "MaxPoolWithIndex", blob_in, [blob_out, str(blob_out) + "_index"], order=order,
                  **kwargs)[0]
