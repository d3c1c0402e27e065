#!/usr/bin/env bash
# Prepare a fresh Debian machine: system packages (mosquitto; containerd, runc, busybox-static
# and the CNI plugins that edged runs pods with) and the project's virtualenv.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# systemd-analyze verifies deploy/'s units in the tests (systemd itself need not run)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)  # the fleet page test drives it headless
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# edged: a real container runtime (scripts/containerd.sh) and offline images (build-images.sh)
command -v containerd >/dev/null 2>&1 || need_apt+=(containerd)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need_apt+=(runc)
[ -x /bin/busybox ] && /bin/busybox --list-full >/dev/null 2>&1 || need_apt+=(busybox-static)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)  # a serial line (pty pair) for the Modbus RTU tests
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
