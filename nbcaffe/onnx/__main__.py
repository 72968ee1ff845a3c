"""Command-line conversions (Caffe2's ``convert-caffe2-to-onnx`` / ``convert-onnx-to-caffe2``).

    python -m nbcaffe.onnx caffe2-to-onnx predict_net.pb --init-net init_net.pb \\
        --value-info '{"data": [1, [1, 3, 224, 224]]}' -o model.onnx
    python -m nbcaffe.onnx onnx-to-caffe2 model.onnx -o predict_net.pb --init-net-output init_net.pb

NetDefs are read and written in binary, or as text when the file name ends in .pbtxt.
``--value-info`` maps each graph input to [ONNX element type, shape] (1 = FLOAT).
"""

from __future__ import annotations

import argparse
import json
import sys

from nbcaffe.proto import caffe2_pb2


def _read_net(path):
    from google.protobuf import text_format

    net = caffe2_pb2.NetDef()
    if path.endswith(".pbtxt"):
        with open(path) as f:
            text_format.Parse(f.read(), net)
    else:
        with open(path, "rb") as f:
            net.ParseFromString(f.read())
    return net


def _write_net(net, path):
    from google.protobuf import text_format

    if path.endswith(".pbtxt"):
        with open(path, "w") as f:
            f.write(text_format.MessageToString(net))
    else:
        with open(path, "wb") as f:
            f.write(net.SerializeToString())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nbcaffe.onnx", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    to_onnx = sub.add_parser("caffe2-to-onnx", help="Caffe2 predict (+ init) net -> ONNX model")
    to_onnx.add_argument("predict_net")
    to_onnx.add_argument("--init-net", default=None)
    to_onnx.add_argument("--value-info", default="{}", help='JSON {input: [elem type, shape]}')
    to_onnx.add_argument("--opset", type=int, default=None)
    to_onnx.add_argument("-o", "--output", required=True)
    to_caffe2 = sub.add_parser("onnx-to-caffe2", help="ONNX model -> Caffe2 predict and init nets")
    to_caffe2.add_argument("model")
    to_caffe2.add_argument("-o", "--output", required=True, help="predict net file")
    to_caffe2.add_argument("--init-net-output", required=True)
    to_caffe2.add_argument("--device", default="CPU")
    args = parser.parse_args(argv)

    import onnx

    if args.command == "caffe2-to-onnx":
        from nbcaffe.onnx import frontend

        value_info = {name: (int(t), tuple(shape)) for name, (t, shape) in json.loads(args.value_info).items()}
        model = frontend.caffe2_net_to_onnx_model(
            _read_net(args.predict_net), _read_net(args.init_net) if args.init_net else None, value_info,
            opset_version=args.opset or frontend.OPSET)
        onnx.checker.check_model(model)
        onnx.save(model, args.output)
    else:
        from nbcaffe.onnx import converter

        init_net, predict_net = converter.onnx_graph_to_caffe2_net(onnx.load(args.model), args.device)
        _write_net(predict_net, args.output)
        _write_net(init_net, args.init_net_output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
