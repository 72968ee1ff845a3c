"""Command line: ``python -m nbcaffe.caffe_translator deploy.prototxt weights.caffemodel``.

Writes the init net (parameters) and the predict net, binary by default or protobuf text
with ``--text``; each file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import sys

from nbcaffe.caffe_translator import CaffeTranslationError, TranslatePretrainedModel, save_nets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nbcaffe.caffe_translator",
        description="Translate a Caffe deploy prototxt and its caffemodel into nbcaffe/Caffe2 init and predict"
                    " nets.")
    parser.add_argument("prototxt", help="Caffe deploy net (text format; V1 'layers' nets are upgraded)")
    parser.add_argument("caffemodel", help="trained Caffe weights (binary NetParameter)")
    parser.add_argument("--init_net", default=None, help="output init net (default init_net.pb, .pbtxt with --text)")
    parser.add_argument("--predict_net", default=None,
                        help="output predict net (default predict_net.pb, .pbtxt with --text)")
    parser.add_argument("--remove_legacy_pad", action="store_true",
                        help="write Caffe's ceil-mode pooling as explicit pads for the declared input shape")
    parser.add_argument("--input_dims", type=int, nargs="+", default=None,
                        help="shape of the first input, overriding the prototxt (e.g. 1 3 224 224)")
    parser.add_argument("--text", action="store_true", help="write protobuf text format instead of binary")
    parser.add_argument("--train", action="store_true", help="translate the TRAIN phase (default: TEST, inference)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    suffix = ".pbtxt" if args.text else ".pb"
    init_path = args.init_net or f"init_net{suffix}"
    predict_path = args.predict_net or f"predict_net{suffix}"
    try:
        init_net, predict_net = TranslatePretrainedModel(args.prototxt, args.caffemodel, is_test=not args.train,
                                                         remove_legacy_pad=args.remove_legacy_pad,
                                                         input_dims=args.input_dims)
    except CaffeTranslationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    save_nets(init_net, predict_net, init_path, predict_path, text=args.text)
    n_params = sum(1 for op in init_net.op if op.type == "GivenTensorFill")
    print(f"wrote {init_path} ({n_params} parameters) and {predict_path} ({len(predict_net.op)} ops;"
          f" inputs {list(predict_net.external_input[:len(init_net.op) - n_params])},"
          f" outputs {list(predict_net.external_output)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
