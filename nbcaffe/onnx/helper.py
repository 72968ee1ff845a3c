"""Small conversions shared by the ONNX backend and frontend: element types, attributes,
constant tensors as Caffe2 fill ops.

ONNX and Caffe2 number their tensor element types differently (ONNX INT64 = 7, Caffe2
INT64 = 10), so every crossing goes through NumPy dtypes here.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from nbcaffe import core, errors, utils
from nbcaffe.proto import caffe2_pb2

# ONNX element types nbcaffe computes with (numba has no float16/bfloat16/float8 arithmetic on
# the CPU; strings are not tensors in nbcaffe kernels).
SUPPORTED_ELEM_TYPES = {
    TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT8, TensorProto.INT16, TensorProto.INT32,
    TensorProto.INT64, TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64,
    TensorProto.BOOL,
}


class OnnxConversionError(errors.NbcaffeError):
    """An ONNX graph (or NetDef, for export) that cannot be converted; names the node."""


def elem_type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"elem_type {elem_type}"


def np_dtype(elem_type: int) -> np.dtype:
    """NumPy dtype of an ONNX element type (error for types nbcaffe cannot hold)."""
    if elem_type not in SUPPORTED_ELEM_TYPES:
        raise OnnxConversionError(f"ONNX element type {elem_type_name(elem_type)} is not supported by nbcaffe"
                                  f" (supported: float, double, bool, int8-64, uint8-64)")
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def onnx_elem_type(dtype) -> int:
    """ONNX element type of a NumPy dtype."""
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def caffe2_data_type(dtype, what="") -> int:
    """Caffe2 TensorProto.DataType of a NumPy dtype (Cast's ``to``)."""
    dtype = np.dtype(dtype)
    if dtype not in utils.DTYPE_TO_DATA_TYPE or dtype.kind == "O":
        raise OnnxConversionError(f"{what}: Caffe2 has no tensor type for {dtype.name}")
    return utils.DTYPE_TO_DATA_TYPE[dtype]


def attributes(node) -> dict:
    """A node's attributes as Python values (tensors as NumPy arrays, graphs kept as protos)."""
    out = {}
    for attr in node.attribute:
        if attr.ref_attr_name:
            raise OnnxConversionError(f"node '{node.name}' ({node.op_type}): attribute references"
                                      f" ('{attr.name}' -> '{attr.ref_attr_name}') exist only inside functions")
        value = onnx.helper.get_attribute_value(attr)
        if attr.type == onnx.AttributeProto.TENSOR:
            value = numpy_helper.to_array(value)
        elif attr.type == onnx.AttributeProto.STRING:
            value = value.decode("utf-8")
        elif attr.type == onnx.AttributeProto.STRINGS:
            value = [v.decode("utf-8") for v in value]
        elif attr.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS):
            value = list(value)
        out[attr.name] = value
    return out


def tensor_to_array(tensor: TensorProto, base_dir: str = "") -> np.ndarray:
    """An ONNX TensorProto (initializer or Constant value) as a NumPy array of a supported type."""
    if tensor.data_type not in SUPPORTED_ELEM_TYPES:
        raise OnnxConversionError(f"tensor '{tensor.name}': element type {elem_type_name(tensor.data_type)}"
                                  f" is not supported by nbcaffe")
    return numpy_helper.to_array(tensor, base_dir)


# Fill op per dtype; the others go through a wider fill and a Cast.
_FILLS = {
    np.dtype(np.float32): "GivenTensorFill",
    np.dtype(np.float64): "GivenTensorDoubleFill",
    np.dtype(np.int32): "GivenTensorIntFill",
    np.dtype(np.int64): "GivenTensorInt64Fill",
    np.dtype(np.int16): "GivenTensorInt16Fill",
    np.dtype(np.bool_): "GivenTensorBoolFill",
}


def fill_ops(name: str, array: np.ndarray, tmp_name: str) -> list:
    """OperatorDefs that write ``array`` into blob ``name`` (Caffe2's GivenTensor*Fill ops).

    int8, uint8 and uint16 are filled as int64 into ``tmp_name`` and cast; uint32/uint64 have
    no Caffe2 type (an error names the blob).
    """
    array = np.asarray(array)
    shape = [int(d) for d in array.shape]
    fill = _FILLS.get(array.dtype)
    if array.dtype == np.float64:
        # Caffe2 arguments hold float32: a double that float32 cannot represent is written as
        # hi + lo (two float32 parts; ~48 significant bits instead of 53).
        hi = array.astype(np.float32)
        lo = (array - hi.astype(np.float64)).astype(np.float32)
        if np.any(lo != 0):
            return [core.CreateOperator(fill, [], [name], shape=shape, values=hi.reshape(-1)),
                    core.CreateOperator(fill, [], [tmp_name], shape=shape, values=lo.reshape(-1)),
                    core.CreateOperator("Add", [name, tmp_name], [name])]
    if fill is not None:
        values = array.reshape(-1)
        return [core.CreateOperator(fill, [], [name], shape=shape, values=values)]
    if array.dtype in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.uint16)):
        wide = array.astype(np.int64).reshape(-1)
        return [core.CreateOperator("GivenTensorInt64Fill", [], [tmp_name], shape=shape, values=wide),
                core.CreateOperator("Cast", [tmp_name], [name], to=utils.DTYPE_TO_DATA_TYPE[array.dtype])]
    raise OnnxConversionError(f"constant '{name}' of type {array.dtype.name} {tuple(shape)}: Caffe2 has no fill op"
                              f" for this type")


def value_info_shape(value_info):
    """(shape, dtype) of a tensor ValueInfoProto: dims are ints, or None when symbolic/unknown;
    shape is None when the rank is unknown; dtype is None for unsupported or non-tensor types."""
    t = value_info.type
    if not t.HasField("tensor_type"):
        return None, None
    tt = t.tensor_type
    dtype = None
    if tt.elem_type in SUPPORTED_ELEM_TYPES:
        dtype = np_dtype(tt.elem_type)
    if not tt.HasField("shape"):
        return None, dtype
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return dims, dtype


def device_option_for(device: str) -> caffe2_pb2.DeviceOption:
    """Caffe2 DeviceOption for an ONNX backend device string ('CPU', 'CUDA', 'CUDA:1')."""
    from nbcaffe import devices

    kind, _, index = str(device).upper().partition(":")
    if kind == "CPU":
        return devices.DeviceOption(devices.CPU)
    if kind == "CUDA":
        return devices.DeviceOption(devices.CUDA, int(index or 0))
    raise OnnxConversionError(f"unknown device '{device}' (use 'CPU', 'CUDA' or 'CUDA:<id>')")
