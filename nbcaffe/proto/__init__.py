"""Generated protobuf modules (see proto/generate.py); import as `from nbcaffe.proto import caffe2_pb2`."""

from nbcaffe.proto import caffe2_pb2

# Later Caffe2 renamed the DeviceType values PROTO_CPU, PROTO_CUDA, ... (same numbers);
# code written against either spelling works.
for _name, _value in caffe2_pb2.DeviceType.items():
    setattr(caffe2_pb2, "PROTO_" + _name, _value)
del _name, _value
