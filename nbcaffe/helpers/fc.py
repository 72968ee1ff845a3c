"""brew.fc: a fully connected layer with its weight and bias parameters."""

from __future__ import annotations

from nbcaffe.model_helper import default_initializers
from nbcaffe.modeling.parameter_info import ParameterTags


def fc(model, blob_in, blob_out, dim_in, dim_out, weight_init=None, bias_init=None, WeightInitializer=None,
       BiasInitializer=None, enable_tensor_core=False, float16_compute=False, **kwargs):
    """Add ``FC([blob_in, <out>_w, <out>_b], blob_out)`` and create its parameters.

    Args:
        model: the ModelHelper.
        blob_in: input blob (N, dim_in) — or any shape flattened at ``axis``.
        blob_out: output blob name; parameters are ``<blob_out>_w`` (dim_out, dim_in) and
            ``<blob_out>_b`` (dim_out).
        weight_init / bias_init: ``(fill op name, kwargs)``; default XavierFill / ConstantFill(0).
        WeightInitializer / BiasInitializer: initializer class or instance instead of tuples.
        **kwargs: passed to the FC op (``axis``, ``axis_w``, ``engine``, ...).

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="fc_doc")
        >>> str(fc(m, "x", "y", dim_in=3, dim_out=2))
        'y'
    """
    weight_initializer, bias_initializer = default_initializers(model, weight_init, bias_init, WeightInitializer,
                                                                BiasInitializer)
    blob_out = blob_out or model.net.NextName()
    bias_tags = [ParameterTags.BIAS]
    if "freeze_bias" in kwargs:
        kwargs.pop("freeze_bias")
        bias_tags.append(ParameterTags.COMPUTED_PARAM)
    weight = model.create_param(param_name=str(blob_out) + "_w", shape=[dim_out, dim_in],
                                initializer=weight_initializer, tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=str(blob_out) + "_b", shape=[dim_out], initializer=bias_initializer,
                              tags=bias_tags)
    if enable_tensor_core:
        kwargs["engine"] = "TENSORCORE"
    if float16_compute:
        kwargs["float16_compute"] = True
    return model.net.FC([blob_in, weight, bias], blob_out, **kwargs)
