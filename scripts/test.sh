#!/usr/bin/env bash
# The whole test suite: style, types, architecture contracts, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
. .venv/bin/activate
echo "==> ruff"; ruff check . && ruff format --check --quiet .
echo "==> mypy"; mypy
echo "==> import contracts"; lint-imports --no-cache
# one containerd for the whole run (edged's tests); stopped by its pid however pytest ends
if [ -z "${EDGEBRIDGE_CRI_ENDPOINT:-}" ] && [ "$(id -u)" -eq 0 ] && command -v containerd >/dev/null; then
  ctd_dir=$(mktemp -d /tmp/edgebridge-ctd.XXXXXX)
  trap 'scripts/containerd.sh stop "$ctd_dir" >/dev/null 2>&1 || true; rm -rf "$ctd_dir" || true' EXIT
  echo "==> containerd"; EDGEBRIDGE_CRI_ENDPOINT=$(scripts/containerd.sh start "$ctd_dir")
  export EDGEBRIDGE_CRI_ENDPOINT
fi
echo "==> pytest"; pytest -q -p no:cacheprovider "$@"
