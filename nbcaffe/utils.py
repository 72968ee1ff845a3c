"""Conversions between NumPy, Python values and Caffe2 protobuf messages."""

from __future__ import annotations

import numbers

import numpy as np
from google.protobuf import message as _message
from google.protobuf import text_format

from nbcaffe import errors
from nbcaffe.proto import caffe2_pb2

DataType = caffe2_pb2.TensorProto  # so that DataType.FLOAT etc. read as in Caffe2

# TensorProto.DataType <-> NumPy dtype.
DATA_TYPE_TO_DTYPE = {
    caffe2_pb2.TensorProto.FLOAT: np.dtype(np.float32),
    caffe2_pb2.TensorProto.INT32: np.dtype(np.int32),
    caffe2_pb2.TensorProto.BYTE: np.dtype(np.uint8),
    caffe2_pb2.TensorProto.STRING: np.dtype(object),
    caffe2_pb2.TensorProto.BOOL: np.dtype(np.bool_),
    caffe2_pb2.TensorProto.UINT8: np.dtype(np.uint8),
    caffe2_pb2.TensorProto.INT8: np.dtype(np.int8),
    caffe2_pb2.TensorProto.UINT16: np.dtype(np.uint16),
    caffe2_pb2.TensorProto.INT16: np.dtype(np.int16),
    caffe2_pb2.TensorProto.INT64: np.dtype(np.int64),
    caffe2_pb2.TensorProto.FLOAT16: np.dtype(np.float16),
    caffe2_pb2.TensorProto.DOUBLE: np.dtype(np.float64),
}
DTYPE_TO_DATA_TYPE = {
    np.dtype(np.float32): caffe2_pb2.TensorProto.FLOAT,
    np.dtype(np.int32): caffe2_pb2.TensorProto.INT32,
    np.dtype(np.bool_): caffe2_pb2.TensorProto.BOOL,
    np.dtype(np.uint8): caffe2_pb2.TensorProto.UINT8,
    np.dtype(np.int8): caffe2_pb2.TensorProto.INT8,
    np.dtype(np.uint16): caffe2_pb2.TensorProto.UINT16,
    np.dtype(np.int16): caffe2_pb2.TensorProto.INT16,
    np.dtype(np.int64): caffe2_pb2.TensorProto.INT64,
    np.dtype(np.float16): caffe2_pb2.TensorProto.FLOAT16,
    np.dtype(np.float64): caffe2_pb2.TensorProto.DOUBLE,
    np.dtype(object): caffe2_pb2.TensorProto.STRING,
}


def dtype_of(data_type: int) -> np.dtype:
    """NumPy dtype for a TensorProto.DataType value (ShapeError for unsupported ones)."""
    try:
        return DATA_TYPE_TO_DTYPE[int(data_type)]
    except KeyError:
        name = caffe2_pb2.TensorProto.DataType.Name(data_type) if data_type in \
            caffe2_pb2.TensorProto.DataType.values() else str(data_type)
        raise errors.ShapeError(f"TensorProto data type {name} has no NumPy equivalent here") from None


def data_type_of(dtype) -> int:
    """TensorProto.DataType value for a NumPy dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind in "SU":
        return caffe2_pb2.TensorProto.STRING
    try:
        return DTYPE_TO_DATA_TYPE[dtype]
    except KeyError:
        raise errors.ShapeError(f"NumPy dtype {dtype} has no Caffe2 TensorProto data type") from None


def MakeArgument(key, value):
    """Build an ``Argument`` proto from a Python value, with Caffe2's typing rules.

    bool and int go to ``i``, float to ``f``, str/bytes to ``s``, a NetDef (or core.Net) to
    ``n``, a TensorProto to ``t``; lists go to ``ints``/``floats``/``strings``/``nets``/
    ``tensors`` by element type (an empty list becomes an empty ``floats``; a list mixing
    ints and floats raises ValueError); NumPy arrays by dtype.

    Example:
        >>> MakeArgument("axis", 1).i
        1
    """
    argument = caffe2_pb2.Argument()
    argument.name = key
    if hasattr(value, "Proto") and callable(value.Proto) and not isinstance(value, _message.Message):
        value = value.Proto()
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        if value.dtype.kind == "f":
            argument.floats.extend(flat.astype(np.float64).tolist())
        elif value.dtype.kind in "iub":
            argument.ints.extend(flat.astype(np.int64).tolist())
        elif value.dtype.kind in "SUO":
            argument.strings.extend(_as_bytes(v) for v in flat.tolist())
        else:
            raise ValueError(f"Unknown argument type: key={key} value dtype={value.dtype}")
        return argument
    if isinstance(value, (bool, np.bool_)):
        argument.i = int(value)
    elif isinstance(value, numbers.Integral):
        argument.i = int(value)
    elif isinstance(value, numbers.Real):
        argument.f = float(value)
    elif isinstance(value, (str, bytes)):
        argument.s = _as_bytes(value)
    elif isinstance(value, caffe2_pb2.NetDef):
        argument.n.CopyFrom(value)
    elif isinstance(value, caffe2_pb2.TensorProto):
        argument.t.CopyFrom(value)
    elif isinstance(value, _message.Message):
        argument.s = value.SerializeToString()
    elif isinstance(value, (list, tuple, range)) or hasattr(value, "__iter__"):
        items = [v.Proto() if hasattr(v, "Proto") and callable(v.Proto) and not isinstance(v, _message.Message)
                 else v for v in value]
        if all(isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) for v in items):
            argument.floats.extend(float(v) for v in items)  # also the empty list, as in Caffe2
        elif all(isinstance(v, (numbers.Integral, bool, np.bool_)) for v in items):
            argument.ints.extend(int(v) for v in items)
        elif all(isinstance(v, (str, bytes)) for v in items):
            argument.strings.extend(_as_bytes(v) for v in items)
        elif all(isinstance(v, caffe2_pb2.NetDef) for v in items):
            argument.nets.extend(items)
        elif all(isinstance(v, caffe2_pb2.TensorProto) for v in items):
            argument.tensors.extend(items)
        else:
            kinds = sorted({type(v).__name__ for v in items})
            raise ValueError(
                f"Unknown argument type: key={key} value={value!r}: a list must hold only floats, only"
                f" ints, only strings or only nets (it mixes {', '.join(kinds)})")
    else:
        raise ValueError(f"Unknown argument type: key={key} value={value!r}, value type={type(value).__name__}")
    return argument


def _as_bytes(value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def NumpyArrayToCaffe2Tensor(array, name=None) -> caffe2_pb2.TensorProto:
    """Serialise a NumPy array into a TensorProto using Caffe2's field for its dtype.

    float32 -> float_data, float64 -> double_data, int64 -> int64_data, uint8 -> byte_data
    (BYTE is used for uint8 only when asked through ``data_type``; here uint8 is UINT8 in
    int32_data as Caffe2's C++ serializer did), bool/int8/int16/uint16/int32 -> int32_data,
    float16 -> int32_data holding the bit patterns, strings -> string_data.
    """
    array = np.asarray(array)
    tensor = caffe2_pb2.TensorProto()
    tensor.dims.extend(int(d) for d in array.shape)
    if name:
        tensor.name = name
    data_type = data_type_of(array.dtype)
    tensor.data_type = data_type
    flat = array.reshape(-1)
    T = caffe2_pb2.TensorProto
    if data_type == T.FLOAT:
        tensor.float_data.extend(flat.tolist())
    elif data_type == T.DOUBLE:
        tensor.double_data.extend(flat.tolist())
    elif data_type == T.INT64:
        tensor.int64_data.extend(flat.tolist())
    elif data_type in (T.INT32, T.BOOL, T.UINT8, T.INT8, T.UINT16, T.INT16):
        tensor.int32_data.extend(flat.astype(np.int32).tolist())
    elif data_type == T.FLOAT16:
        tensor.int32_data.extend(flat.view(np.uint16).astype(np.int32).tolist())
    elif data_type == T.STRING:
        tensor.string_data.extend(_as_bytes(v) for v in flat.tolist())
    return tensor


def Caffe2TensorToNumpyArray(tensor) -> np.ndarray:
    """Decode a TensorProto into a NumPy array (any storage field, incl. raw_data and BYTE).

    Raises ProtoError when the data length does not match ``dims``.
    """
    T = caffe2_pb2.TensorProto
    dims = tuple(int(d) for d in tensor.dims)
    count = int(np.prod(dims)) if dims else 1
    data_type = tensor.data_type
    dtype = dtype_of(data_type)
    if tensor.HasField("segment"):
        count = int(tensor.segment.end - tensor.segment.begin)
    if tensor.storage_type == T.RAW or tensor.HasField("raw_data"):
        raw = tensor.raw_data
        values = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype) if dtype.kind != "O" else None
        if values is None:
            raise errors.ProtoError(f"tensor '{tensor.name}': raw_data cannot hold strings")
    elif data_type == T.FLOAT:
        values = np.array(tensor.float_data, dtype=np.float32)
    elif data_type == T.DOUBLE:
        values = np.array(tensor.double_data, dtype=np.float64)
    elif data_type == T.INT64:
        values = np.array(tensor.int64_data, dtype=np.int64)
    elif data_type == T.BYTE:
        values = np.frombuffer(tensor.byte_data, dtype=np.uint8).copy()
    elif data_type == T.STRING:
        values = np.empty(len(tensor.string_data), dtype=object)
        values[:] = list(tensor.string_data)
    elif data_type == T.FLOAT16:
        if len(tensor.byte_data) and not len(tensor.int32_data):  # caffe2_serialize_fp16_as_bytes
            values = np.frombuffer(tensor.byte_data, dtype=np.float16).copy()
        else:
            values = np.array(tensor.int32_data, dtype=np.int32).astype(np.uint16).view(np.float16)
    elif data_type in (T.INT32, T.BOOL, T.UINT8, T.INT8, T.UINT16, T.INT16):
        if data_type == T.UINT8 and len(tensor.byte_data) and not len(tensor.int32_data):
            values = np.frombuffer(tensor.byte_data, dtype=np.uint8).copy()
        else:
            values = np.array(tensor.int32_data, dtype=np.int64).astype(dtype)
    else:
        raise errors.ProtoError(f"tensor '{tensor.name}': unsupported data_type {data_type}")
    if values.size != count:
        raise errors.ProtoError(
            f"tensor '{tensor.name}': dims {list(dims)} need {count} values but the proto holds {values.size}")
    if tensor.HasField("segment"):
        return values.astype(dtype, copy=False)
    return values.astype(dtype, copy=False).reshape(dims)


def parse_proto(data, cls, what="protobuf"):
    """Parse binary bytes (or text format when the bytes are not valid binary) into ``cls``.

    Accepts the 2018 spelling ``cuda_gpu_id`` for DeviceOption field 2 in text format.
    Raises ProtoError naming the message type on failure.
    """
    message = cls()
    if isinstance(data, str):
        return parse_text(data, cls, what)
    try:
        message.ParseFromString(bytes(data))
        return message
    except _message.DecodeError as binary_error:
        try:
            return parse_text(bytes(data).decode("utf-8"), cls, what)
        except (UnicodeDecodeError, errors.ProtoError):
            raise errors.ProtoError(
                f"{what}: {len(data)} bytes are not a valid {cls.DESCRIPTOR.full_name}"
                f" (binary parse: {binary_error})") from None


def parse_text(text, cls, what="protobuf text"):
    """Parse protobuf text format into ``cls`` (ProtoError with the line on failure)."""
    message = cls()
    text = text.replace("cuda_gpu_id:", "device_id:")
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise errors.ProtoError(f"{what}: not a valid {cls.DESCRIPTOR.full_name} in text format: {exc}") from None
    return message


def TryReadProtoWithClass(cls, s):
    """Caffe2's helper: parse ``s`` (binary or text) as ``cls``."""
    return parse_proto(s, cls)


def read_net(path) -> caffe2_pb2.NetDef:
    """Read a NetDef from a .pb (binary) or .pbtxt (text) file."""
    with open(path, "rb") as handle:
        data = handle.read()
    return parse_proto(data, caffe2_pb2.NetDef, what=str(path))
