#!/usr/bin/env bash
# Install edgebridge on a gateway box (Debian 12 and the like), once, as root:
#
#   scripts/install-edge.sh                                  # install; join later
#   scripts/install-edge.sh --cloud ADDR --token TOKEN --node-name gw-1   # install, join, start
#
# What it does (each step is skipped when already done, so re-running is safe):
#   - apt-get installs python3-venv and mosquitto when missing;
#   - a virtualenv under /opt/edgebridge/venv with edgebridge in it (Debian refuses
#     `pip install` system-wide, and a venv under /root is hidden by the unit's ProtectHome);
#   - the system user edgecore and its data dir /var/lib/edgecore (0700);
#   - the units edgecore.service and edgebridge-mapper@.service (and, with --cloudhub,
#     cloudhub.service with the user cloudhub and /var/lib/cloudhub) in /etc/systemd/system,
#     pointing at that venv;
#   - with --cloud/--token/--node-name: `edgecore join` as the edgecore user, then
#     `systemctl enable --now edgecore`.
#
# --prefix DIR installs everything under DIR instead of / (DIR/opt/edgebridge,
# DIR/etc/systemd/system, DIR/var/lib/edgecore; the units point there) and leaves the system
# alone: no apt-get, no users, no systemctl. The tests use it; so can a packager.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/install-edge.sh [--prefix DIR] [--source DIR] [--python PYTHON] [--cloudhub]
                               [--cloud ADDR --token TOKEN --node-name NAME [--cert-port PORT]]

  --prefix DIR      install under DIR instead of / and change nothing else on the system
  --source DIR      the edgebridge source tree to install (default: this script's checkout)
  --python PYTHON   interpreter for the venv, 3.11 or newer (default python3)
  --cloudhub        also install cloudhub.service (user cloudhub, data in /var/lib/cloudhub)
  --cloud ADDR      join this cloudhub (HOST[:WS_PORT]) and start edgecore; needs --token
                    and --node-name (as `edgecore join`)
  --cert-port PORT  cloudhub's join/admin port, if not 10002
USAGE
}

die() { echo "install-edge: $*" >&2; exit 1; }

prefix=/
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
python=python3
cloudhub=0
cloud="" token="" node="" cert_port=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --source) source_dir="${2:?--source needs a directory}"; shift 2 ;;
    --python) python="${2:?--python needs an interpreter}"; shift 2 ;;
    --cloudhub) cloudhub=1; shift ;;
    --cloud) cloud="${2:?--cloud needs an address}"; shift 2 ;;
    --token) token="${2:?--token needs a token}"; shift 2 ;;
    --node-name) node="${2:?--node-name needs a name}"; shift 2 ;;
    --cert-port) cert_port="${2:?--cert-port needs a port}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
if [ -n "$cloud$token$node" ] && { [ -z "$cloud" ] || [ -z "$token" ] || [ -z "$node" ]; }; then
  die "--cloud, --token and --node-name go together"
fi
[ -f "$source_dir/pyproject.toml" ] || die "$source_dir is not an edgebridge source tree"

prefix="$(mkdir -p "$prefix" && cd "$prefix" && pwd)"
root="${prefix%/}"              # "" for /
system=0; [ -z "$root" ] && system=1
opt="$root/opt/edgebridge"
venv="$opt/venv"
units="$root/etc/systemd/system"
edge_data="$root/var/lib/edgecore"
cloud_data="$root/var/lib/cloudhub"

if [ "$system" = 1 ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root (or use --prefix DIR to install elsewhere)"
  need=()
  "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  if [ ${#need[@]} -gt 0 ]; then
    echo "==> apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
else
  echo "==> installing under $prefix (no apt-get, users or systemctl)"
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$python is older than Python 3.11"

echo "==> virtualenv $venv"
mkdir -p "$opt"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# Build from a copy: setuptools writes build/ and *.egg-info next to the sources otherwise.
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
for part in pyproject.toml README.md wire hive cloudhub edgecore edgectl devices; do
  cp -R "$source_dir/$part" "$build/"
done
"$venv/bin/pip" install -q --disable-pip-version-check "$build" \
  || die "pip install failed (is the package index reachable?)"

if [ "$system" = 1 ]; then
  for user in edgecore $([ "$cloudhub" = 1 ] && echo cloudhub); do
    if ! id -u "$user" >/dev/null 2>&1; then
      echo "==> system user $user"
      useradd --system --user-group --home-dir "/var/lib/$user" --shell /usr/sbin/nologin "$user"
    fi
  done
fi

install_dir() {  # path owner
  install -d -m 0700 "$1"
  if [ "$system" = 1 ]; then chown -R "$2:$2" "$1"; fi
}
install_dir "$edge_data" edgecore
[ "$cloudhub" = 1 ] && install_dir "$cloud_data" cloudhub

echo "==> systemd units in $units"
install -d -m 0755 "$units"
unit() {  # name
  sed -e "s#/opt/edgebridge#$opt#g" -e "s#/var/lib/edgecore#$edge_data#g" \
      -e "s#/var/lib/cloudhub#$cloud_data#g" "$source_dir/deploy/$1" > "$units/$1.tmp"
  chmod 0644 "$units/$1.tmp"
  mv "$units/$1.tmp" "$units/$1"
}
unit edgecore.service
unit edgebridge-mapper@.service
[ "$cloudhub" = 1 ] && unit cloudhub.service

if [ "$system" = 1 ]; then
  systemctl daemon-reload 2>/dev/null || echo "    (systemd is not running: units installed, not loaded)"
fi

if [ -n "$cloud" ]; then
  echo "==> joining $cloud as $node"
  join=("$venv/bin/edgecore" join --cloud "$cloud" --token "$token" --node-name "$node"
        --data-dir "$edge_data")
  [ -n "$cert_port" ] && join+=(--cert-port "$cert_port")
  if [ "$system" = 1 ]; then
    runuser -u edgecore -- "${join[@]}"
    systemctl enable --now edgecore.service
    echo "edgecore is running: systemctl status edgecore; journalctl -u edgecore -f"
  else
    "${join[@]}"
  fi
  exit 0
fi

cat <<NEXT
installed: $venv/bin/{edgecore,edgectl,cloudhub}, units in $units, data in $edge_data
next, as root:
  runuser -u edgecore -- $venv/bin/edgecore join --cloud ADDR --token TOKEN \\
      --node-name NAME --data-dir $edge_data
  systemctl enable --now edgecore
  systemctl enable --now edgebridge-mapper@DEVICE     # a mapper per Device, if any
NEXT
