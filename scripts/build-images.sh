#!/usr/bin/env bash
# Build the busybox and pause OCI images offline from busybox-static (deterministic, see
# scripts/build_images.py) and import them into containerd's k8s.io namespace, where the CRI
# finds them: docker.io/library/busybox:latest and :1.36 (what `image: busybox` means) and
# localhost/edgebridge/pause:1 (the sandbox image of scripts/containerd.sh).
# usage: scripts/build-images.sh [--address /path/to/containerd.sock] [--out DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
address=/run/containerd/containerd.sock
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --address) address=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--address SOCK] [--out DIR]" >&2; exit 2 ;;
  esac
done
address=${address#unix://}
cleanup=""
if [ -z "$out" ]; then out=$(mktemp -d); cleanup=$out; fi
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT
python3 "$here/build_images.py" "$out"
for image in busybox pause; do
  ctr --address "$address" -n k8s.io images import "$out/$image.tar"
done
# more names for the same busybox image (examples/ use busybox:1.36)
ctr --address "$address" -n k8s.io images tag --force docker.io/library/busybox:latest \
  docker.io/library/busybox:1.36 >/dev/null
ctr --address "$address" -n k8s.io images ls -q
