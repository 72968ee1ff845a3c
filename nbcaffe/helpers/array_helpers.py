"""brew.concat and depth_concat: join blobs along the channel (or a given) axis."""

from __future__ import annotations

import logging

from nbcaffe.helpers.tools import add_op

log = logging.getLogger("nbcaffe")


def concat(model, blobs_in, blob_out, **kwargs):
    """Add ``Concat(blobs_in) -> [blob_out, _<blob_out>_concat_dims]``; returns the output.

    The axis is ``axis`` when given, else the channel axis of ``order`` (NCHW: 1, NHWC: 3);
    ``order`` from the arg_scope is dropped when ``axis`` is given (the op refuses both).  The
    second output holds each input's size along the axis (what the gradient's Split uses).

    Args:
        model: the ModelHelper.
        blobs_in: list of input blobs.
        blob_out: output name.
        **kwargs: Concat arguments: ``axis``, ``order``, ``add_axis``.

    Returns:
        BlobReference of the concatenated output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="concat_doc")
        >>> y = concat(m, ["a", "b"], "ab", axis=1)
        >>> list(m.net.Proto().op[0].output)
        ['ab', '_ab_concat_dims']
    """
    if "axis" in kwargs and kwargs.get("order"):
        kwargs.pop("order")  # (Caffe2's test here missed axis=0)
    return add_op(model.net, "Concat", blobs_in, [blob_out, "_" + str(blob_out) + "_concat_dims"], **kwargs)[0]


def depth_concat(model, blobs_in, blob_out, **kwargs):
    """Deprecated spelling of :func:`concat` (logs a warning, then emits the same Concat).

    Args:
        model: the ModelHelper.
        blobs_in: list of input blobs.
        blob_out: output name.
        **kwargs: as :func:`concat`.

    Returns:
        BlobReference of the concatenated output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="depth_concat_doc")
        >>> str(depth_concat(m, ["a", "b"], "ab", order="NCHW"))
        'ab'
    """
    log.warning("DepthConcat is deprecated. use Concat instead.")
    return concat(model, blobs_in, blob_out, **kwargs)
