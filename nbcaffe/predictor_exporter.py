"""``nbcaffe.predictor_exporter``: the same functions as
:mod:`nbcaffe.predictor.predictor_exporter` (Caffe2's ``caffe2.python.predictor`` path also works)."""

from nbcaffe.predictor.predictor_exporter import (  # noqa: F401
    PredictorExportMeta,
    get_meta_net_def,
    load_from_db,
    load_predictor,
    prepare_prediction_net,
    save_to_db,
    set_model_info,
)

__all__ = ["PredictorExportMeta", "get_meta_net_def", "load_from_db", "load_predictor", "prepare_prediction_net",
           "save_to_db", "set_model_info"]
