#!/usr/bin/env bash
# Prepare a fresh Debian machine: system packages (mosquitto) and the project's virtualenv.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# systemd-analyze verifies deploy/'s units in the tests (systemd itself need not run)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.edgebridge-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing edgebridge and its test tools into .venv"
  .venv/bin/pip install -q --upgrade pip >.venv/install.log 2>&1
  .venv/bin/pip install -q -e '.[test]' >>.venv/install.log 2>&1 || {
    cat .venv/install.log >&2; echo "pip install failed (log above)" >&2; exit 1; }
  touch "$stamp"
fi
