"""Save a predictor (its nets and parameters) into one DB file and load it back (Caffe2's
``predictor.predictor_exporter``).

The DB holds a serialized ``MetaNetDef`` under the string blob ``!!META_NET_DEF`` and every
parameter, written by one ``Save`` op: nbcaffe's DBs are written beside the target and moved into
place when complete, so a crash mid-save leaves the previous file intact.  The MetaNetDef carries
three nets under Caffe2's keys — GLOBAL_INIT_NET_TYPE (``Load`` the parameters from the DB reader
blob ``!!PREDICTOR_DBREADER``), PREDICT_INIT_NET_TYPE (zero-fill inputs and outputs) and
PREDICT_NET_TYPE — and the parameter, input and output lists.  Files are interchangeable with
Caffe2's for minidb (same record layout and message bytes).
"""

from __future__ import annotations

import collections

from nbcaffe import core, errors, scope
from nbcaffe import workspace as _workspace
from nbcaffe.devices import CPU, DeviceOption
from nbcaffe.predictor import predictor_py_utils as utils
from nbcaffe.predictor._predictor import Predictor, as_device_option
from nbcaffe.proto import caffe2_pb2

C = utils.CONSTS


class PredictorExportMeta(collections.namedtuple(
        "PredictorExportMeta",
        "predict_net, parameters, inputs, outputs, shapes, name, extra_init_net, net_type, num_workers")):
    """What to export: the predict net (core.Net or NetDef), the parameter, input and output blob
    names (BlobReferences or strings), optional ``shapes`` {blob: shape} for inputs/outputs the
    workspace cannot tell, a ``name`` distinguishing several predictors in one DB, an
    ``extra_init_net`` appended to the predict-init net, and the net ``net_type``/``num_workers``."""

    def __new__(cls, predict_net, parameters, inputs, outputs, shapes=None, name="", extra_init_net=None,
                net_type=None, num_workers=None):
        inputs = [str(i) for i in inputs]
        outputs = [str(o) for o in outputs]
        parameters = [str(p) for p in parameters]
        if len(set(inputs)) != len(inputs):
            raise errors.ArgumentError(f"PredictorExportMeta: inputs must be unique, got {inputs}")
        for what, blobs in (("inputs", inputs), ("outputs", outputs)):
            both = sorted(set(parameters) & set(blobs))
            if both:
                raise errors.ArgumentError(f"PredictorExportMeta: parameters and {what} must be disjoint;"
                                           f" both hold {both}")
        if isinstance(predict_net, (core.Net, core.Plan)):
            predict_net = predict_net.Proto()
        if not isinstance(predict_net, (caffe2_pb2.NetDef, caffe2_pb2.PlanDef)):
            raise TypeError(f"PredictorExportMeta: predict_net must be a core.Net or NetDef,"
                            f" got {type(predict_net).__name__}")
        return super().__new__(cls, predict_net, parameters, inputs, outputs, dict(shapes or {}), name,
                               extra_init_net, net_type, num_workers)

    def inputs_name(self):
        return utils.get_comp_name(C.INPUTS_BLOB_TYPE, self.name)

    def outputs_name(self):
        return utils.get_comp_name(C.OUTPUTS_BLOB_TYPE, self.name)

    def parameters_name(self):
        return utils.get_comp_name(C.PARAMETERS_BLOB_TYPE, self.name)

    def global_init_name(self):
        return utils.get_comp_name(C.GLOBAL_INIT_NET_TYPE, self.name)

    def predict_init_name(self):
        return utils.get_comp_name(C.PREDICT_INIT_NET_TYPE, self.name)

    def predict_net_name(self):
        return utils.get_comp_name(C.PREDICT_NET_TYPE, self.name)

    def train_init_plan_name(self):
        return utils.get_comp_name(C.TRAIN_INIT_PLAN_TYPE, self.name)

    def train_plan_name(self):
        return utils.get_comp_name(C.TRAIN_PLAN_TYPE, self.name)


def _global_init_net(meta):
    net = core.Net("global-init")
    net.Load([C.PREDICTOR_DBREADER], meta.parameters)
    net.Proto().external_input.extend([C.PREDICTOR_DBREADER])
    net.Proto().external_output.extend(meta.parameters)
    return net.Proto()


def get_meta_net_def(predictor_export_meta, ws=None):
    """The MetaNetDef of a predictor; input/output shapes come from workspace ``ws`` (default:
    the current one) unless ``shapes`` gives them."""
    meta = predictor_export_meta
    ws = ws if ws is not None else _workspace.current()
    meta_net_def = caffe2_pb2.MetaNetDef()
    utils.AddNet(meta_net_def, meta.predict_init_name(), utils.create_predict_init_net(ws, meta))
    utils.AddNet(meta_net_def, meta.global_init_name(), _global_init_net(meta))
    utils.AddNet(meta_net_def, meta.predict_net_name(), utils.create_predict_net(meta))
    utils.AddBlobs(meta_net_def, meta.parameters_name(), meta.parameters)
    utils.AddBlobs(meta_net_def, meta.inputs_name(), meta.inputs)
    utils.AddBlobs(meta_net_def, meta.outputs_name(), meta.outputs)
    return meta_net_def


def set_model_info(meta_net_def, project_str, model_class_str, version):
    meta_net_def.modelInfo.project = project_str
    meta_net_def.modelInfo.modelClass = model_class_str
    meta_net_def.modelInfo.version = version


def save_to_db(db_type, db_destination, predictor_export_meta, ws=None):
    """Write the predictor's MetaNetDef and parameters (values from ``ws``, default the current
    workspace) into DB ``db_destination`` of ``db_type`` ('minidb', 'lmdb', ...) in one atomic Save."""
    ws = ws if ws is not None else _workspace.current()
    meta_net_def = get_meta_net_def(predictor_export_meta, ws)
    ws.feed_blob(C.META_NET_DEF, utils.serialize_protobuf_struct(meta_net_def), DeviceOption(CPU))
    missing = [p for p in predictor_export_meta.parameters if not ws.has_blob(p) or ws.blobs[p] is None]
    if missing:
        raise errors.BlobNotFoundError(f"save_to_db: parameters {missing} are not in workspace '{ws.name}'"
                                       f"{errors.did_you_mean(missing[0], ws.blobs)}")
    op = core.CreateOperator("Save", [C.META_NET_DEF] + predictor_export_meta.parameters, [],
                             absolute_path=True, db=str(db_destination), db_type=db_type)
    ws.run_operator_once(op)


def _read_meta_net_def(ws, filename, db_type):
    ws.run_operator_once(core.CreateOperator("CreateDB", [], [C.PREDICTOR_DBREADER], db=str(filename),
                                             db_type=db_type))
    ws.run_operator_once(core.CreateOperator("Load", [C.PREDICTOR_DBREADER], [C.META_NET_DEF]))
    blob = ws.fetch_blob(C.META_NET_DEF)
    return utils.deserialize_protobuf_struct(blob if isinstance(blob, bytes) else str(blob).encode("utf-8"),
                                             caffe2_pb2.MetaNetDef)


def load_from_db(filename, db_type, device_option=None, ws=None):
    """The MetaNetDef saved in ``filename``; leaves the DB reader blob ``!!PREDICTOR_DBREADER`` in
    ``ws`` (default: the current workspace) for the global init net.  Every op of every net is put
    on ``device_option`` (default: the current DeviceScope, if any)."""
    ws = ws if ws is not None else _workspace.current()
    meta_net_def = _read_meta_net_def(ws, filename, db_type)
    device_option = as_device_option(device_option)
    if device_option is None:
        device_option = scope.CurrentDeviceScope()
    if device_option is not None:
        for item in meta_net_def.nets:
            for op in item.value.op:
                op.device_option.CopyFrom(device_option)
    return meta_net_def


def _net(meta_net_def, key, filename):
    net = utils.GetNet(meta_net_def, key)
    if net is None:
        keys = [item.key for item in meta_net_def.nets]
        raise errors.NbcaffeError(f"{filename}: the saved predictor has no net '{key}' (it has {keys})")
    return net


def prepare_prediction_net(filename, db_type, device_option=None):
    """Load the predictor saved in ``filename`` into the current workspace: parameters loaded,
    inputs/outputs zero-filled, predict net created.  Returns the predict net (core.Net)."""
    meta_net_def = load_from_db(filename, db_type, device_option)
    _workspace.RunNetOnce(_net(meta_net_def, C.GLOBAL_INIT_NET_TYPE, filename))
    _workspace.RunNetOnce(_net(meta_net_def, C.PREDICT_INIT_NET_TYPE, filename))
    predict_net = core.Net(_net(meta_net_def, C.PREDICT_NET_TYPE, filename))
    _workspace.CreateNet(predict_net)
    return predict_net


def load_predictor(filename, db_type="minidb", device=None, name=""):
    """(nbcaffe) A :class:`~nbcaffe.predictor.Predictor` for the predictor saved in ``filename``,
    in a workspace of its own, on ``device`` ('cpu', 'cuda', ...; default: as saved)."""
    ws = _workspace.Workspace(f"predictor:{filename}")
    meta_net_def = load_from_db(filename, db_type, device_option=device, ws=ws)
    key = utils.get_comp_name
    init_net = caffe2_pb2.NetDef()
    init_net.CopyFrom(_net(meta_net_def, key(C.GLOBAL_INIT_NET_TYPE, name), filename))
    init_net.op.extend(_net(meta_net_def, key(C.PREDICT_INIT_NET_TYPE, name), filename).op)
    return Predictor(init_net, _net(meta_net_def, key(C.PREDICT_NET_TYPE, name), filename), device, workspace=ws,
                     input_names=utils.GetBlobs(meta_net_def, key(C.INPUTS_BLOB_TYPE, name)),
                     output_names=utils.GetBlobs(meta_net_def, key(C.OUTPUTS_BLOB_TYPE, name)) or None)
