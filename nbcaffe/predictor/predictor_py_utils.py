"""MetaNetDef helpers (Caffe2's ``predictor.predictor_py_utils`` and ``predictor.serde``): the
repeated key/value maps of a MetaNetDef read and written by key, and the two nets that
predictor_exporter builds from a :class:`PredictorExportMeta`."""

from __future__ import annotations

from nbcaffe import core, errors
from nbcaffe.proto import caffe2_pb2

CONSTS = caffe2_pb2.PredictorConsts()  # the key names, as the message's field defaults


def get_comp_name(string, name):
    """``string`` or ``string_name`` when a predictor ``name`` is given."""
    return f"{string}_{name}" if name else string


def _ProtoMapGet(field, key):
    for item in field:
        if item.key == key:
            return item.value
    return None


def GetPlan(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.plans, key)


def GetNet(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.nets, key)


def GetBlobs(meta_net_def, key):
    blobs = _ProtoMapGet(meta_net_def.blobs, key)
    return [] if blobs is None else list(blobs)


def GetApplicationSpecificInfo(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.applicationSpecificInfo, key)


def AddBlobs(meta_net_def, blob_name, blob_def):
    blobs = _ProtoMapGet(meta_net_def.blobs, blob_name)
    if blobs is None:
        entry = meta_net_def.blobs.add()
        entry.key = blob_name
        blobs = entry.value
    blobs.extend(str(b) for b in blob_def)


def AddNet(meta_net_def, net_name, net_def):
    meta_net_def.nets.add(key=net_name, value=net_def)


def AddPlan(meta_net_def, plan_name, plan_def):
    meta_net_def.plans.add(key=plan_name, value=plan_def)


def serialize_protobuf_struct(message) -> bytes:
    return message.SerializeToString()


def deserialize_protobuf_struct(data, cls):
    message = cls()
    message.ParseFromString(data)
    return message


def create_predict_net(meta):
    """The predict net of ``meta``: its ops, inputs + parameters as external inputs, outputs as
    external outputs (the net type if given)."""
    net = core.Net(meta.predict_net.name or "predict")
    proto = net.Proto()
    proto.op.extend(meta.predict_net.op)
    proto.external_input.extend(meta.inputs + meta.parameters)
    proto.external_output.extend(meta.outputs)
    if meta.net_type is not None:
        proto.type = meta.net_type
    if meta.num_workers is not None:
        proto.num_workers = meta.num_workers
    return proto


def create_predict_init_net(ws, meta):
    """A net that zero-fills every input and output with the shape in ``meta.shapes`` or, failing
    that, the shape the blob has in workspace ``ws`` now; then ``meta.extra_init_net``."""
    net = core.Net("predict-init")
    for blob in meta.inputs + meta.outputs:
        shape = meta.shapes.get(blob)
        if shape is None:
            if not ws.has_blob(blob) or ws.blobs[blob] is None:
                raise errors.BlobNotFoundError(
                    f"predictor_exporter: the shape of '{blob}' is needed for the predict-init net; give it in"
                    f" PredictorExportMeta(shapes={{'{blob}': (...)}}) or run the net once before exporting")
            shape = ws.fetch_blob(blob).shape
        net.ConstantFill([], blob, shape=list(shape), value=0.0)
    net.Proto().external_input.extend(meta.inputs + meta.outputs)
    if meta.extra_init_net:
        net.AppendNet(meta.extra_init_net)
    return net.Proto()
