"""brew.elementwise_linear and brew.prelu: elementwise layers with one learned value per
channel.

(``prelu`` is in Caffe2's nonlinearity helpers; it lives here, next to the other
per-channel-parameter layer, because that module is owned elsewhere in nbcaffe.)
"""

from __future__ import annotations

from nbcaffe.helpers.tools import add_op
from nbcaffe.model_helper import default_initializers
from nbcaffe.modeling import initializers
from nbcaffe.modeling.parameter_info import ParameterTags


def elementwise_linear(model, blob_in, blob_out, dim, weight_init=None, bias_init=None, **kwargs):
    """Add ``ElementwiseLinear([blob_in, <out>_w, <out>_b]) -> blob_out``:
    ``Y[n, d] = X[n, d] * w[d] + b[d]`` (X flattened to 2-D at ``axis``, default 1).

    Args:
        model: the ModelHelper.
        blob_in: input (N, dim) (or any shape whose dims from ``axis`` multiply to dim).
        blob_out: output name; parameters ``<blob_out>_w`` (dim; ConstantFill 1, WEIGHT) and
            ``<blob_out>_b`` (dim; ConstantFill 0, BIAS).
        dim: number of features.
        weight_init / bias_init: ``(fill op, kwargs)`` or initializer instances.
        **kwargs: ElementwiseLinear arguments (``axis``).

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="el_doc")
        >>> y = elementwise_linear(m, "x", "el", dim=4)
        >>> [str(p) for p in m.params]
        ['el_w', 'el_b']
    """
    blob_out = blob_out or model.net.NextName()
    weight_cls = weight_init if isinstance(weight_init, initializers.Initializer) else None
    bias_cls = bias_init if isinstance(bias_init, initializers.Initializer) else None
    weight_initializer, bias_initializer = default_initializers(
        model, None if weight_cls else weight_init, None if bias_cls else bias_init, weight_cls, bias_cls,
        default_weight=("ConstantFill", {"value": 1.0}), default_bias=("ConstantFill", {"value": 0.0}))
    weight = model.create_param(param_name=str(blob_out) + "_w", shape=[dim], initializer=weight_initializer,
                                tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=str(blob_out) + "_b", shape=[dim], initializer=bias_initializer,
                              tags=ParameterTags.BIAS)
    return add_op(model.net, "ElementwiseLinear", [blob_in, weight, bias], blob_out, **kwargs)


def prelu(model, blob_in, blob_out, num_channels=1, slope_init=None, **kwargs):
    """Add ``PRelu([blob_in, <out>_slope]) -> blob_out``: ``Y = X`` where X > 0, else
    ``slope[c] * X`` (one slope per channel, or one shared slope when ``num_channels=1``).

    The slope is a parameter (optimised, no WEIGHT/BIAS tag, as in Caffe2) initialised to 0.25.
    ``order`` (from the arg_scope) is passed to the op so NHWC models use the last dim as the
    channel (Caffe2's helper dropped it, which made NHWC PRelu use dim 1).

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, ...) for NCHW.
        blob_out: output name; the slope is ``<blob_out>_slope`` (num_channels).
        num_channels: number of slopes (C, or 1 for a shared slope).
        slope_init: ``(fill op, kwargs)``; default ``("ConstantFill", {"value": 0.25})``.
        **kwargs: ``order``; other cuDNN hints are dropped.

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="prelu_doc")
        >>> y = prelu(m, "conv1", "prelu1", num_channels=16)
        >>> str(m.params[0]), m.get_param_info("prelu1_slope").shape
        ('prelu1_slope', [16])
    """
    if model.init_params:
        slope_initializer = initializers.update_initializer(None, slope_init, ("ConstantFill", {"value": 0.25}))
    else:
        slope_initializer = initializers.ExternalInitializer()
    slope = model.create_param(param_name=str(blob_out) + "_slope", shape=[num_channels],
                               initializer=slope_initializer)
    op_kwargs = {"order": kwargs["order"]} if "order" in kwargs else {}
    if "engine" in kwargs:
        op_kwargs["engine"] = kwargs["engine"]
    return add_op(model.net, "PRelu", [blob_in, slope], [blob_out], **op_kwargs)
