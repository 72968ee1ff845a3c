"""Turn a net and its trained parameters into an (init_net, predict_net) pair for a Predictor or
for ``init_net.pb`` / ``predict_net.pb`` files (Caffe2's ``predictor.mobile_exporter``).

The init net holds one ``GivenTensor*Fill`` per parameter with its current workspace value and a
``[1, 1]`` zero placeholder per net input; the predict net lists the inputs first in
``external_input`` (so ``Predictor.run([x])`` binds ``x`` to the data blob) and the blobs it
writes but never reads as ``external_output``.
"""

from __future__ import annotations

import logging

import numpy as np

from nbcaffe import core, errors, utils
from nbcaffe.proto import caffe2_pb2

log = logging.getLogger("nbcaffe")

# dtype -> the fill op that recreates it (Caffe2's table, plus the dtypes nbcaffe also fills)
FILL_FOR_DTYPE = {
    np.dtype(np.float32): "GivenTensorFill",
    np.dtype(np.float64): "GivenTensorDoubleFill",
    np.dtype(np.int32): "GivenTensorIntFill",
    np.dtype(np.int64): "GivenTensorInt64Fill",
    np.dtype(np.int16): "GivenTensorInt16Fill",
    np.dtype(np.bool_): "GivenTensorBoolFill",
    np.dtype(np.uint8): "GivenTensorByteStringToUInt8Fill",
    np.dtype(object): "GivenTensorStringFill",
}
_RUNNING_STATS = {"SpatialBN": (3, 4)}  # inputs that are statistics, not data


def add_tensor(net, name, blob):
    """Append to NetDef ``net`` the op that fills blob ``name`` with array ``blob``.

    uint8 arrays travel as one byte string (Caffe2's compact form); object arrays must hold bytes.
    """
    blob = np.asarray(blob)
    op_type = FILL_FOR_DTYPE.get(blob.dtype)
    if op_type is None:
        raise errors.ArgumentError(
            f"mobile_exporter: parameter '{name}' has dtype {blob.dtype}, which no fill op recreates"
            f" (supported: {', '.join(str(d) for d in FILL_FOR_DTYPE)})")
    values = blob
    if blob.dtype == np.uint8:
        values = [blob.tobytes()]
    elif blob.dtype == object:
        bad = [v for v in blob.reshape(-1).tolist() if not isinstance(v, bytes)]
        if bad:
            raise errors.ArgumentError(f"mobile_exporter: string parameter '{name}' holds a"
                                       f" {type(bad[0]).__name__}; only bytes are exported")
        values = blob.reshape(-1).tolist()
    op = core.CreateOperator(op_type, [], [name], arg=[utils.MakeArgument("shape", list(blob.shape)),
                                                       utils.MakeArgument("values", values)])
    net.op.extend([op])


def _versions(proto):
    """(every blob with its final version in first-seen order, blobs some op reads)."""
    versions = {name: 0 for name in proto.external_input}
    read = set()
    for op in proto.op:
        for name in op.input:
            versions.setdefault(name, 0)
            read.add(name)
        for name in op.output:
            versions[name] = versions.get(name, 0) + 1
    return versions, read


def Export(workspace, net, params, inputs=None):
    """(init_net, predict_net) NetDefs for ``net`` with the values of ``params`` taken from
    ``workspace`` (the ``nbcaffe.workspace`` module or a ``Workspace``).

    Args:
        workspace: where the parameter values are (``FetchBlob`` or ``fetch_blob``).
        net: a ``core.Net`` or NetDef (the test/deploy net).
        params: the blobs to store in the init net (``model.GetParams()`` plus, for batch
            normalisation, ``model.GetComputedParams()``).
        inputs: (nbcaffe) the net's real inputs.  Every other blob the net reads without writing
            it is then exported from the workspace too, so forgotten parameters (BN running
            statistics) cannot turn into zero placeholders.  Default: Caffe2's rule, every blob
            read but not written and not in ``params`` is an input.
    """
    proto = net if isinstance(net, caffe2_pb2.NetDef) else net.Proto()
    fetch = workspace.FetchBlob if hasattr(workspace, "FetchBlob") else workspace.fetch_blob
    params = [str(p) for p in params]
    versions, read = _versions(proto)
    if inputs is not None:
        inputs = [str(i) for i in inputs]
        params += [b for b, v in versions.items() if v == 0 and b not in params and b not in inputs]
        input_blobs = inputs
    else:
        input_blobs = [b for b, v in versions.items() if v == 0 and b not in params]
        _warn_about_statistics(proto, input_blobs)
    output_blobs = [b for b, v in versions.items() if v != 0 and b not in read]

    init_net = caffe2_pb2.NetDef()
    init_net.name = (proto.name or "model") + "_init"
    for name in params:
        add_tensor(init_net, name, fetch(name))
    for name in input_blobs:  # placeholders so that CreateNet finds every input; run() replaces them
        init_net.op.extend([core.CreateOperator("GivenTensorFill", [], [name], arg=[
            utils.MakeArgument("shape", [1, 1]), utils.MakeArgument("values", [0.0])])])

    predict_net = caffe2_pb2.NetDef()
    predict_net.CopyFrom(proto)
    del predict_net.external_input[:]
    predict_net.external_input.extend(input_blobs + [b for b in proto.external_input if b not in input_blobs])
    predict_net.external_input.extend(b for b in params if b not in predict_net.external_input)
    del predict_net.external_output[:]
    predict_net.external_output.extend(output_blobs)
    return init_net, predict_net


def _warn_about_statistics(proto, input_blobs):
    inputs = set(input_blobs)
    for op in proto.op:
        for index in _RUNNING_STATS.get(op.type, ()):
            if index < len(op.input) and op.input[index] in inputs:
                log.warning("mobile_exporter.Export: '%s' (input %d of %s) is not in params and becomes a [1, 1]"
                            " zero placeholder; pass model.GetComputedParams() too, or inputs=[...]",
                            op.input[index], index, op.type)
