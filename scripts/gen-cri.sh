#!/usr/bin/env bash
# Regenerate the CRI stubs (edgecore/cri/api_pb2*.py{,i}) from our api.proto with
# grpcio-tools. The stubs are committed; run this after editing api.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
"$py" -m grpc_tools.protoc -I . \
  --python_out=. --grpc_python_out=. --pyi_out=. \
  edgecore/cri/api.proto
echo "generated edgecore/cri/api_pb2.py, api_pb2.pyi, api_pb2_grpc.py"
