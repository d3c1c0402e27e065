#!/usr/bin/env bash
# A private containerd for tests, demos and benches: `scripts/containerd.sh start DIR` writes a
# config in DIR (own root, state and socket; cgroupfs; restrict_oom_score_adj because this kind
# of VM lacks CAP_SYS_RESOURCE; a CNI bridge and subnet derived from DIR so that two instances
# never collide), starts containerd, waits until its socket answers, imports the busybox and
# pause images (scripts/build-images.sh) and prints the CRI endpoint (unix://DIR/containerd.sock).
# `scripts/containerd.sh stop DIR` stops it by the pid in DIR/containerd.pid.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

usage() { echo "usage: $0 start|stop|endpoint DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
sock="$dir/containerd.sock"
pidfile="$dir/containerd.pid"

cni_bin=/usr/lib/cni
[ -x "$cni_bin/bridge" ] || cni_bin=/opt/cni/bin
# the pause image the sandboxes use; scripts/build-images.sh builds and imports it
pause_image="localhost/edgebridge/pause:1"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

write_config() {
  # bridge name (<= 15 chars) and a /24 in 10.200-250.x.0 from a hash of DIR
  local h; h=$(printf '%s' "$dir" | sha256sum | cut -c1-6)
  local n=$((16#$h))
  local bridge="eb${h}"
  local subnet="10.$((200 + n % 50)).$(((n / 50) % 256)).0/24"
  mkdir -p "$dir/root" "$dir/state" "$dir/cni/net.d" "$dir/cni/ipam"
  # overlayfs cannot stack on overlayfs (DIR inside a container's root): copy layers instead
  snapshotter=overlayfs
  case "$(stat -f -c %T "$dir" 2>/dev/null)" in overlayfs|overlay) snapshotter=native ;; esac
  cat >"$dir/cni/net.d/10-edgebridge.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "edgebridge-$h",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$subnet"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snapshotter"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1
TOML
}

start() {
  if running; then echo "unix://$sock"; return 0; fi
  command -v containerd >/dev/null || { echo "containerd is not installed (scripts/bootstrap.sh)" >&2; exit 1; }
  write_config
  rm -f "$sock"
  containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    if [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1; then
      CONTAINERD_SNAPSHOTTER=$snapshotter "$here/build-images.sh" --address "$sock" \
        >"$dir/images.log" 2>&1 || {
        cat "$dir/images.log" >&2; echo "image import failed" >&2; exit 1; }
      echo "unix://$sock"
      return 0
    fi
    if ! running; then
      tail -20 "$dir/containerd.log" >&2
      echo "containerd exited at start (log: $dir/containerd.log)" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "containerd did not answer on $sock within 15 s (log: $dir/containerd.log)" >&2
  exit 1
}

stop() {
  if running; then
    local pid; pid=$(cat "$pidfile")
    # the sandboxes and containers it started: runc shims outlive containerd, so remove them
    # through the CRI first (best effort), then stop containerd itself
    if command -v ctr >/dev/null && [ -S "$sock" ]; then
      for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
        ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
      done
      sleep 0.3
      for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
        ctr --address "$sock" -n k8s.io tasks rm -f "$t" >/dev/null 2>&1 || true
      done
      for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
        ctr --address "$sock" -n k8s.io containers rm "$c" >/dev/null 2>&1 || true
      done
    fi
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  # sandbox network namespaces and mounts left under DIR would keep it from being removed
  { grep " $dir/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  local h; h=$(printf '%s' "$dir" | sha256sum | cut -c1-6)
  ip link del "eb$h" >/dev/null 2>&1 || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  endpoint) echo "unix://$sock" ;;
  *) usage ;;
esac
