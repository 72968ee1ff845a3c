"""Static shape and type inference over NetDefs (``workspace.InferShapesAndTypes``).

Uses each op's schema ``infer`` function, the same one the runner allocates outputs with,
so what this reports is what running would produce.
"""

from __future__ import annotations

import numpy as np

from nbcaffe import errors, registry, schema, utils
from nbcaffe.proto import caffe2_pb2


class UnknownShape(Exception):
    """Raised by an ``infer`` function that needs input values to know its output shape."""


def infer_op(op_def, shapes, dtypes):
    """(output shapes, output dtypes) of one OperatorDef given input shapes/dtypes.

    Raises UnknownShape when the op's shapes depend on input values, SchemaError /
    ShapeError for invalid ops.
    """
    record = registry.get_schema(op_def.type)
    cls = record.op_class
    args = schema.parse_args(cls.declared_args, op_def, f"{op_def.type}", cls.strict_args, cls.ignored_args)
    static = getattr(cls, "static_infer", None)
    if static is not None:
        out_shapes, out_dtypes = static(args, shapes, dtypes, op_def)
    else:
        out_shapes, out_dtypes = cls.infer(args, shapes, dtypes)
    n = len(op_def.output)
    return list(out_shapes)[:n], list(out_dtypes)[:n]


def infer_nets(workspace, nets, blob_dimensions=None, blob_types=None):
    """Walk ``nets`` in order and infer every blob; see workspace.InferShapesAndTypes."""
    shapes: dict = {}
    dtypes: dict = {}
    for name, value in workspace.blobs.items():
        if value is not None and hasattr(value, "shape") and hasattr(value, "dtype"):
            shapes[name] = tuple(value.shape)
            dtypes[name] = np.dtype(value.dtype)
    for name, dims in (blob_dimensions or {}).items():
        shapes[str(name)] = tuple(int(d) for d in dims)
        dtypes.setdefault(str(name), np.dtype(np.float32))
    for name, data_type in (blob_types or {}).items():
        dtypes[str(name)] = utils.dtype_of(data_type)
    if not isinstance(nets, (list, tuple)):
        nets = [nets]
    for net in nets:
        net_def = net if isinstance(net, caffe2_pb2.NetDef) else net.Proto()
        for op_def in net_def.op:
            if not all(name in shapes for name in op_def.input):
                continue
            try:
                out_shapes, out_dtypes = infer_op(op_def, [shapes[n] for n in op_def.input],
                                                  [dtypes[n] for n in op_def.input])
            except (UnknownShape, NotImplementedError):
                continue
            except errors.NbcaffeError as exc:
                raise type(exc)(f"InferShapesAndTypes: {op_def.type} op with inputs {list(op_def.input)}: {exc}") \
                    from None
            for name, shape, dtype in zip(op_def.output, out_shapes, out_dtypes):
                if shape is None:
                    continue
                shapes[name] = tuple(int(d) for d in shape)
                dtypes[name] = np.dtype(dtype)
    out_shapes = {name: list(shape) for name, shape in shapes.items()}
    out_types = {}
    for name, dtype in dtypes.items():
        try:
            out_types[name] = utils.data_type_of(dtype)
        except errors.ShapeError:
            out_types[name] = caffe2_pb2.TensorProto.UNDEFINED
    return out_shapes, out_types
