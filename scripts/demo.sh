#!/usr/bin/env bash
# The main job, end to end on one machine: an embedded cloudhub, one edge node joined to it
# over mutual TLS, a pod with its configmap and secret mirrored to the edge, served by the
# edge's local API and really run there (a private containerd through CRI, busybox image
# built offline; without root or containerd the pod stays metadata), a simulated thermostat whose readings reach the cloud and whose setpoint
# is set from the cloud, and the edge serving its cache with the cloud gone.
# Pass --keep to leave everything running (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
. .venv/bin/activate

KEEP=0; [ "${1:-}" = "--keep" ] && KEEP=1
WS_PORT=${WS_PORT:-10000}; HTTPS_PORT=${HTTPS_PORT:-10002}; LOCAL_API=${LOCAL_API:-127.0.0.1:10550}
# edgecore's internal broker: 11883 by default, not 1883 (a system mosquitto may hold that)
MQTT_PORT=${MQTT_PORT:-11883}
DEMO=${DEMO_DIR:-./data/demo}
rm -rf "$DEMO"; mkdir -p "$DEMO"
CLOUD="$DEMO/cloud"; EDGE="$DEMO/edge-1"
pids=()
RUNTIME=(--runtime none)
CTD="$DEMO/containerd"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  [ -f "$CTD/containerd.pid" ] && scripts/containerd.sh stop "$CTD" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
watched=()  # "PID NAME LOG" of the processes the demo needs alive
watch() { watched+=("$1 $2 $3"); }
check_alive() { # a watched process that exited: its one-line reason, at once
  local entry pid name log
  for entry in "${watched[@]}"; do
    read -r pid name log <<<"$entry"
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited: $(grep -v '^[0-9]\{4\}-' "$log" | tail -n 1) (log: $log)" >&2
      echo "(ports in use? WS_PORT, HTTPS_PORT, LOCAL_API and MQTT_PORT choose others)" >&2
      exit 1
    fi
  done
}
wait_for() { # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    check_alive
    [ $SECONDS -ge $deadline ] && { echo "timed out waiting for: $*" >&2; exit 1; }
    sleep 0.2
  done
}
api() { # GET on the edge's local API (no curl needed)
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "http://$LOCAL_API$1"
}
ctl() { edgectl --server "https://127.0.0.1:$HTTPS_PORT" --data-dir "$CLOUD" "$@"; }

if [ "$(id -u)" -eq 0 ] && command -v containerd >/dev/null; then
  say "starting a private containerd in $CTD (CNI bridge of its own; busybox + pause built offline)"
  ENDPOINT=$(scripts/containerd.sh start "$CTD")
  echo "$ENDPOINT"
  RUNTIME=(--runtime cri --runtime-endpoint "$ENDPOINT" --pod-log-dir "$DEMO/pod-logs")
else
  echo "no root or no containerd: pods stay metadata (edgecore --runtime none)"
fi

say "starting cloudhub (embedded store in $CLOUD/store.db, wss :$WS_PORT, https :$HTTPS_PORT)"
cloudhub serve --data-dir "$CLOUD" --bind 127.0.0.1 --ws-port "$WS_PORT" --https-port "$HTTPS_PORT" \
  2>"$DEMO/cloudhub.log" & pids+=($!)
watch $! cloudhub "$DEMO/cloudhub.log"
wait_for 20 grep -q "cloudhub ready" "$DEMO/cloudhub.log"
wait_for 20 ctl get nodes

say "edgectl token create"
TOKEN=$(ctl token create --ttl 15m)
echo "${TOKEN:0:24}…  (sha256 of the CA, then a JWT)"

say "edgecore join --node-name edge-1"
edgecore join --cloud "127.0.0.1:$WS_PORT" --cert-port "$HTTPS_PORT" --token "$TOKEN" \
  --node-name edge-1 --data-dir "$EDGE"

say "edgecore run (local API on $LOCAL_API, internal mosquitto on 127.0.0.1:$MQTT_PORT, ${RUNTIME[*]:0:2})"
edgecore run --data-dir "$EDGE" --local-api "$LOCAL_API" --mqtt-port "$MQTT_PORT" "${RUNTIME[@]}" \
  2>"$DEMO/edgecore.log" & pids+=($!)
watch $! edgecore "$DEMO/edgecore.log"
wait_for 20 api /healthz
online() { ctl get nodes edge-1 -o json | grep -q '"status": "True"'; }
wait_for 20 online

say "edgectl get nodes"
ctl get nodes

say "edgectl apply -f examples/pod.yaml"
ctl apply -f examples/pod.yaml
wait_for 5 api /api/v1/namespaces/default/pods/sensor-reader

say "the edge serves the pod from its SQLite cache: GET http://$LOCAL_API/api/v1/namespaces/default/pods/sensor-reader"
api /api/v1/namespaces/default/pods/sensor-reader | python3 -c '
import json, sys
p = json.load(sys.stdin); m = p["metadata"]
print("pod %s/%s  node=%s  image=%s  resourceVersion=%s" % (m["namespace"], m["name"],
      p["spec"]["nodeName"], p["spec"]["containers"][0]["image"], m["resourceVersion"]))'
api /api/v1/namespaces/default/configmaps/sensor-config | python3 -c '
import json, sys; print("configmap sensor-config data:", json.load(sys.stdin)["data"])'
api /api/v1/namespaces/default/secrets/sensor-credentials | python3 -c '
import json, sys; print("secret sensor-credentials keys:", sorted(json.load(sys.stdin)["data"]))'

if [ "${RUNTIME[1]}" = cri ]; then
  say "edged runs the pod through containerd (CRI); its status comes back like a kubelet's"
  running() { ctl get pods sensor-reader -o json | python3 -c '
import json, sys
s = json.load(sys.stdin).get("status", {})
sys.exit(0 if s.get("phase") == "Running" and all(c.get("ready") for c in s.get("containerStatuses", [{}])) else 1)'; }
  wait_for 30 running
  ctl get pods
  ctl get pods sensor-reader -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)["status"]; c = s["containerStatuses"][0]
print("phase=%s podIP=%s containerID=%s restartCount=%d" % (s["phase"], s["podIP"], c["containerID"][:25] + "…", c["restartCount"]))'
  wait_for 10 test -s "$(ls "$DEMO"/pod-logs/default_sensor-reader_*/reader/0.log 2>/dev/null | head -1)"
  echo "the container's output ($DEMO/pod-logs/default_sensor-reader_<uid>/reader/0.log):"
  tail -n 2 "$DEMO"/pod-logs/default_sensor-reader_*/reader/0.log
  say "edgectl logs / exec reach the container through the cloud link (no port open on the edge)"
  echo "\$ edgectl logs sensor-reader --tail 2"
  ctl logs sensor-reader --tail 2
  echo "\$ edgectl exec sensor-reader -- sh -c 'echo hello from \$(hostname); exit 3'"
  ctl exec sensor-reader -- sh -c 'echo hello from $(hostname); exit 3' || echo "(exit code $?)"
fi

say "edit the configmap in the cloud; the edge follows"
sed 's/SAMPLE_RATE: "5s"/SAMPLE_RATE: "1s"/' examples/pod.yaml | ctl apply -f -
python3 - "http://$LOCAL_API/api/v1/namespaces/default/configmaps/sensor-config" <<'PY'
import json, sys, time, urllib.request
t0 = time.monotonic()
while json.load(urllib.request.urlopen(sys.argv[1], timeout=2))["data"]["SAMPLE_RATE"] != "1s":
    if time.monotonic() - t0 > 5:
        sys.exit("the edit did not reach the edge within 5 s")
    time.sleep(0.01)
print(f"SAMPLE_RATE=1s served by the edge {1000 * (time.monotonic() - t0):.0f} ms after apply returned")
PY

say "register a thermostat (KubeEdge v1beta1 DeviceModel + Device) and start its mapper"
ctl apply -f examples/devices/thermostat-model.yaml -f examples/devices/thermostat-device.yaml
python -m devices --broker "mqtt://127.0.0.1:$MQTT_PORT" --local-api "$LOCAL_API" \
  2>"$DEMO/mapper.log" & pids+=($!)
watch $! mapper "$DEMO/mapper.log"
reported() { ctl get devices thermostat-1 -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)
t = {x["propertyName"]: x for x in d.get("status", {}).get("twins", [])}
sys.exit(0 if t.get(sys.argv[1], {}).get("reported", {}).get("value") == sys.argv[2] or
         (sys.argv[2] == "*" and "reported" in t.get(sys.argv[1], {})) else 1)' "$@"; }
wait_for 20 reported temperature '*'
ctl get devices

say "edgectl twin set thermostat-1 setpoint=21.5  (cloud -> edge -> mapper -> reported back)"
ctl twin set thermostat-1 setpoint=21.5
wait_for 10 reported setpoint 21.5
ctl get devices
tail -n 3 "$DEMO/mapper.log" | sed 's/^.*INFO [a-z.]*: /mapper: /'

say "observing: events, metrics and the fleet page"
ctl get events 2>/dev/null | head -n 6 || true
curl -s --cacert "$CLOUD/ca.crt" -H "Authorization: Bearer $(cat "$CLOUD/admin.token")" \
  "https://127.0.0.1:$HTTPS_PORT/metrics" | grep -E '^edgebridge_cloud_(connected_edges|devices_in_sync) '
echo "fleet page: https://127.0.0.1:$HTTPS_PORT/ui/  (log in with $CLOUD/admin.token)"

say "stop the cloud: the edge keeps serving its cache"
watched=("${watched[@]:1}")  # cloudhub stops on purpose now
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
api /api/v1/pods | python3 -c '
import json, sys; print("pods served offline:", [p["metadata"]["name"] for p in json.load(sys.stdin)["items"]])'
if [ "${RUNTIME[1]}" = cri ]; then
  sleep 1
  echo "and the pod keeps running offline; its latest output:"
  tail -n 1 "$DEMO"/pod-logs/default_sensor-reader_*/reader/0.log
fi

say "done: logs in $DEMO/{cloudhub,edgecore,mapper}.log"
if [ "$KEEP" = 1 ]; then
  echo "restarting cloudhub; everything keeps running until Ctrl-C"
  cloudhub serve --data-dir "$CLOUD" --bind 127.0.0.1 --ws-port "$WS_PORT" --https-port "$HTTPS_PORT" \
    2>>"$DEMO/cloudhub.log" & pids[0]=$!
  wait
fi
