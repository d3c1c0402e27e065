#!/usr/bin/env bash
# Build a stock KubeEdge mapper (mapper-framework, "virtual" protocol) offline, to run against edgecore's DMI.
#   scripts/dmi-mapper-build.sh <kubeedge-v1.15-source-tree> [build-dir]
# The mapper is generated with mapper-framework's own hack/make-rules/generate.sh, its driver replaced by
# scripts/dmi_mapper/*.go (an in-memory device), and compiled against the KubeEdge tree's vendor/ directory:
# the build dir carries KubeEdge's go.mod/go.sum and a link to its vendor/, and the mapper becomes the package
# github.com/kubeedge/kubeedge/dmimapper, so `go build -mod=vendor` needs no network. The one module the
# template needs that KubeEdge does not vendor (influxdb-client-go, for its optional InfluxDB push) is replaced
# by a stub that refuses that push. Prints the binary's path last; bench/dmi_mapper.py finds it through
# DMI_MAPPER_BIN or the default build dir.
set -euo pipefail
src=$(readlink -f "${1:?usage: dmi-mapper-build.sh <kubeedge-source-tree> [build-dir]}")
build=${2:-$(mktemp -d /tmp/dmimapper-build.XXXX)}
here=$(dirname "$(readlink -f "$0")")
mf=$src/staging/src/github.com/kubeedge/mapper-framework
[ -x "$mf/hack/make-rules/generate.sh" ] || [ -f "$mf/hack/make-rules/generate.sh" ] \
  || { echo "dmi-mapper-build: $mf has no hack/make-rules/generate.sh (not a KubeEdge >= 1.15 tree)" >&2; exit 1; }
[ -d "$src/vendor" ] || { echo "dmi-mapper-build: $src has no vendor/ directory" >&2; exit 1; }
command -v go >/dev/null || { echo "dmi-mapper-build: no go toolchain (Debian: apt-get install golang-go)" >&2; exit 1; }
mkdir -p "$build"; build=$(readlink -f "$build")
rm -rf "$build/mf" "$build/virtual" "$build/dmimapper"
cp -r "$mf" "$build/mf"
# generate.sh asks for the mapper's name on stdin and writes the mapper next to the framework
(cd "$build/mf" && echo Virtual | bash hack/make-rules/generate.sh >/dev/null)
mv "$build/virtual" "$build/dmimapper"
m=$build/dmimapper
rm -f "$m/go.mod" "$m/go.sum"
grep -rl 'github.com/kubeedge/virtual' "$m" | xargs sed -i 's#github.com/kubeedge/virtual#github.com/kubeedge/kubeedge/dmimapper#g'
cp "$here/dmi_mapper/devicetype.go" "$m/driver/devicetype.go"
cp "$here/dmi_mapper/driver.go" "$m/driver/driver.go"
cp "$here/dmi_mapper/influxdb2.go" "$m/data/dbmethod/influxdb2/client.go"
cp "$src/go.mod" "$src/go.sum" "$build/"
ln -sfn "$src/vendor" "$build/vendor"
echo "dmi-mapper-build: building in $build ..." >&2
(cd "$build" && GOFLAGS=-mod=vendor CGO_ENABLED=0 go build -trimpath -o "$build/bin/dmimapper" ./dmimapper/cmd)
echo "$build/bin/dmimapper"
