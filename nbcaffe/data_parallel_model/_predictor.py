"""Nets derived from a parallelized model: a predictor net of one replica, and a net moved
into a replica's name and device scope."""

from __future__ import annotations

import copy
import logging

from nbcaffe import core, errors, scope
from nbcaffe.devices import CUDA
from nbcaffe.proto import caffe2_pb2

log = logging.getLogger("nbcaffe")


def extract_predictor_net(net_proto, input_blobs, output_blobs, device=None, renames=None, disabled_inputs=None):
    """(predictor core.Net, parameter blob names) for computing ``output_blobs`` from
    ``input_blobs`` with the ops of ``net_proto`` (Caffe2's ``model_helper.ExtractPredictorNet``).

    Takes the ops from the first one that reads an input to the last one that writes an output,
    keeps those whose inputs are known (an input, an external input of the net, or written by a
    kept op), moves them to ``device`` if given and renames blobs by ``renames``.  The returned
    names are the predictor's external inputs other than ``input_blobs``: the parameters to
    save with it.  An op with ``is_test=0`` is refused (extract from a test model).
    """
    renames = dict(renames or {})
    inputs = [str(b) for b in input_blobs]
    outputs = {str(b) for b in output_blobs}
    external_in = set(net_proto.external_input)
    external_out = set(net_proto.external_output)
    known = external_in | set(inputs)
    if disabled_inputs:
        known -= set(disabled_inputs)
    ops = list(net_proto.op)
    starts = [i for i, op in enumerate(ops) if set(inputs) & set(op.input) and op.type != "StopGradient"]
    ends = [i for i, op in enumerate(ops) if outputs & set(op.output)]
    if not starts:
        raise errors.NbcaffeError(f"ExtractPredictorNet: no op reads any of the inputs {sorted(inputs)}")
    if not ends:
        raise errors.NbcaffeError(f"ExtractPredictorNet: no op writes any of the outputs {sorted(outputs)}")
    predict = core.Net(net_proto.name + "_predict")
    proto = predict.Proto()
    ext_inputs, ext_outputs = list(inputs), set(outputs)
    for op in ops[min(starts): max(ends) + 1]:
        if not known.issuperset(op.input):
            log.debug("ExtractPredictorNet: skipping %s, unknown inputs %s", op.type, set(op.input) - known)
            continue
        for arg in op.arg:
            if arg.name == "is_test" and arg.i == 0:
                raise errors.NbcaffeError(
                    f"ExtractPredictorNet: op {op.type} (outputs {list(op.output)}) has is_test=0: extract the"
                    f" predictor from a test model (Parallelize without an optimizer, init_params=False)")
        new = caffe2_pb2.OperatorDef()
        new.CopyFrom(op)
        if device is not None:
            new.device_option.device_type = device.device_type
            new.device_option.device_id = device.device_id
        proto.op.append(new)
        known.update(op.output)
        ext_inputs.extend(b for b in op.input if b in external_in and b not in ext_inputs)
        ext_outputs.update(b for b in op.output if b in external_out)

    def rename(blobs):
        return [renames.get(b, b) for b in blobs]

    for op in proto.op:
        op.input[:] = rename(op.input)
        op.output[:] = rename(op.output)
    proto.external_input.extend(rename(ext_inputs))
    proto.external_output.extend(rename(sorted(ext_outputs)))
    predict._creation_sites = [None] * len(proto.op)
    predict._op_outputs = {b for op in proto.op for b in op.output}
    renamed_inputs = set(rename(inputs))
    return predict, [b for b in proto.external_input if b not in renamed_inputs]


def convert_net_for_device(net, device=None):
    """A copy of ``net`` with every blob in the replica scope of ``device`` ('gpu_<id>/' or
    'cpu_<id>/', default: the current DeviceScope) and every op on that device."""
    device = device if device is not None else scope.CurrentDeviceScope()
    if device is None:
        raise errors.ArgumentError("ConvertNetForDevice: give a device or call it inside a DeviceScope")
    prefix = f"{'gpu' if device.device_type == CUDA else 'cpu'}_{device.device_id}/"
    moved = copy.deepcopy(net)
    proto = moved.Proto()
    for op in proto.op:
        if "RecurrentNetwork" in op.type:
            raise NotImplementedError("ConvertNetForDevice: RecurrentNetwork ops are not supported")
        op.input[:] = [prefix + b for b in op.input]
        op.output[:] = [prefix + b for b in op.output]
        op.control_input[:] = [prefix + b for b in op.control_input]
        op.device_option.CopyFrom(device)
    proto.external_input[:] = [prefix + b for b in proto.external_input]
    proto.external_output[:] = [prefix + b for b in proto.external_output]
    if hasattr(moved, "_op_outputs"):
        moved._op_outputs = {b for op in proto.op for b in op.output}
    return moved
