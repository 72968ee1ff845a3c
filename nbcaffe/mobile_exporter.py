"""``nbcaffe.mobile_exporter``: the same module as :mod:`nbcaffe.predictor.mobile_exporter`
(Caffe2 kept it in ``caffe2.python.predictor``; both import paths work)."""

from nbcaffe.predictor.mobile_exporter import FILL_FOR_DTYPE, Export, add_tensor  # noqa: F401

__all__ = ["Export", "add_tensor", "FILL_FOR_DTYPE"]
