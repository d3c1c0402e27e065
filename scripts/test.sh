#!/usr/bin/env bash
# The whole test suite: style, types, architecture contracts, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
. .venv/bin/activate
echo "==> ruff"; ruff check . && ruff format --check --quiet .
echo "==> mypy"; mypy
echo "==> import contracts"; lint-imports --no-cache
echo "==> pytest"; pytest -q -p no:cacheprovider "$@"
