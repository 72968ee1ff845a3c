"""brew.dropout: a Dropout layer with its mask output."""

from __future__ import annotations

from nbcaffe.helpers.tools import add_op, require_is_test


def dropout(model, blob_in, blob_out, use_cudnn=False, **kwargs):
    """Add ``Dropout(blob_in) -> [blob_out, _<blob_out>_mask]``; returns the output.

    Training (``is_test=0``) zeroes each element with probability ``ratio`` and scales the
    kept ones by 1/(1-ratio); ``is_test=1`` copies the input.  ``is_test`` is required, as
    Caffe2 asserted.  The engine is CUDNN with ``use_cudnn`` and DEFAULT otherwise (both run
    the default kernel here).

    Args:
        model: the ModelHelper.
        blob_in: input.
        blob_out: output name; the mask goes to ``_<blob_out>_mask``.
        use_cudnn: request engine CUDNN (from the model's arg_scope).
        **kwargs: Dropout arguments: ``ratio`` (0.5), ``is_test`` (required).

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="dropout_doc")
        >>> y = dropout(m, "fc6", "drop6", ratio=0.5, is_test=0)
        >>> list(m.net.Proto().op[0].output)
        ['drop6', '_drop6_mask']
    """
    require_is_test(kwargs, "dropout")
    kwargs["engine"] = "CUDNN" if use_cudnn else "DEFAULT"
    return add_op(model.net, "Dropout", blob_in, [blob_out, "_" + str(blob_out) + "_mask"], **kwargs)[0]
