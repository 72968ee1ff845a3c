"""Inference and deployment (Caffe2's ``caffe2.python.predictor`` package and ``workspace.Predictor``).

* :class:`Predictor` — init net once, then ``run(inputs)`` → outputs, on the CPU or a GPU.
* :mod:`~nbcaffe.predictor.mobile_exporter` — ``Export(workspace, net, params)`` →
  ``(init_net, predict_net)`` with the trained values baked into the init net.
* :mod:`~nbcaffe.predictor.predictor_exporter` — a predictor with its parameters in one
  minidb/lmdb file (``save_to_db``, ``load_from_db``, ``prepare_prediction_net``, ``load_predictor``).

docs/deployment.md shows the whole path from a trained model to a deployed one.
"""

from nbcaffe.predictor import mobile_exporter, predictor_exporter, predictor_py_utils  # noqa: F401
from nbcaffe.predictor._predictor import Predictor, as_device_option  # noqa: F401

__all__ = ["Predictor", "as_device_option", "mobile_exporter", "predictor_exporter", "predictor_py_utils"]
