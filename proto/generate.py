"""Regenerate the committed protobuf modules from proto/*.proto.

Usage:  python proto/generate.py [--out DIR]

Uses the protoc bundled in grpcio-tools (pinned in the `dev` extra), so the output is
byte-for-byte reproducible; tests/test_proto.py regenerates into a temporary folder and
fails when the committed nbcaffe/proto/*_pb2.py(i) differ.  The generated import line
`import caffe2_pb2` style is not an issue because each proto file here is self-contained.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

PROTO_DIR = pathlib.Path(__file__).resolve().parent
REPO = PROTO_DIR.parent
DEFAULT_OUT = REPO / "nbcaffe" / "proto"
PROTOS = ("caffe2.proto", "caffe.proto")


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Run protoc on every file in PROTOS; return the paths written."""
    from grpc_tools import protoc  # dev dependency; imported here so the module imports without it

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in PROTOS:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            str(PROTO_DIR / name),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {name}")
    written = []
    for name in PROTOS:
        stem = name[: -len(".proto")]
        written += [out_dir / f"{stem}_pb2.py", out_dir / f"{stem}_pb2.pyi"]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
