#!/usr/bin/env python3
"""Fails when the committed stubs no longer match the proto.

Regenerates engram/similarity/v1/similarity.proto with grpc_tools.protoc (the
pinned grpcio-tools: another version writes other bytes for the same proto)
into a temporary directory and compares with src/engram_similarity/_proto/.
With --write, replaces the committed files instead (after a proto change).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
PROTO = "engram/similarity/v1/similarity.proto"
COMMITTED = HERE / "src" / "engram_similarity" / "_proto"
GENERATED = ("similarity_pb2.py", "similarity_pb2.pyi")
# Keep in step with scripts/python-client-test.sh and pyproject.toml.
GRPCIO_TOOLS = "1.85.4"


def generate(out: Path) -> None:
    from grpc_tools import protoc

    args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--pyi_out={out}", PROTO]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO_ROOT / PROTO}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate the committed stubs")
    options = parser.parse_args()
    version = importlib.metadata.version("grpcio-tools")
    if version != GRPCIO_TOOLS:
        print(
            f"check_stubs: grpcio-tools {version} installed, the stubs are made "
            f"with {GRPCIO_TOOLS}",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        out = Path(tmp) / Path(PROTO).parent
        stale = []
        for name in GENERATED:
            fresh = (out / name).read_text()
            path = COMMITTED / name
            if options.write:
                path.write_text(fresh)
                continue
            current = path.read_text() if path.exists() else ""
            if fresh != current:
                stale.append(name)
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(True),
                        fresh.splitlines(True),
                        f"committed/{name}",
                        f"regenerated/{name}",
                        n=1,
                    )
                )
    if stale:
        print(
            f"\ncheck_stubs: {', '.join(stale)} differ from {PROTO}; run "
            f"clients/python/check_stubs.py --write and commit the result",
            file=sys.stderr,
        )
        return 1
    print("check_stubs: " + ("written" if options.write else "the stubs match the proto"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
