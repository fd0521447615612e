#!/usr/bin/env bash
# The main job: Build → Ship → Run on an embedded default store.
# Build the sample app from its Dockerfile (busybox loaded as its base),
# rebuild it from the cache, list and inspect it, save and load it; ship it
# through a local berth registry into a second, empty store; run it there
# in the foreground and detached, with its logs and ps.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p berth
berth=$PWD/target/release/berth
export BERTH_ROOT=${BERTH_ROOT:-$(mktemp -d /tmp/berth-demo.XXXXXX)}
export BERTH_RUNROOT=${BERTH_RUNROOT:-$BERTH_ROOT-run}
out=$(mktemp -d /tmp/berth-demo-out.XXXXXX)
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
echo "store: $BERTH_ROOT"
step "$berth" load -i tests/fixtures/busybox-1.35
step "$berth" tag "$("$berth" images -q --filter dangling=true | head -1)" busybox:1.35
mkdir -p "$out/context"
cp tests/fixtures/sample-app.Dockerfile "$out/context/Dockerfile"
step "$berth" build -t sample/app:1.0 "$out/context"
step "$berth" build -t sample/app:1.0 "$out/context"
step "$berth" images
step "$berth" image inspect --format '{{json .Config}}' sample/app:1.0
step "$berth" history sample/app:1.0
step "$berth" save -o "$out/app.tar" sample/app:1.0
step "$berth" save --format oci-archive -o "$out/app-oci.tar" sample/app:1.0
step "$berth" system df
step "$berth" rmi sample/app:1.0
step "$berth" load -i "$out/app-oci.tar"
step "$berth" images
# Ship: a local registry, push, and a pull into an empty second store.
"$berth" registry serve --addr 127.0.0.1:0 --storage "$out/registry" > "$out/registry.log" &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$out/registry.log" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's/^berth registry listening on //p' "$out/registry.log")
echo "registry: $addr"
step "$berth" tag sample/app:1.0 "$addr/sample/app:1.0"
step "$berth" push "$addr/sample/app:1.0"
export BERTH_ROOT=$BERTH_ROOT-pulled
step "$berth" pull "$addr/sample/app:1.0"
step "$berth" tag "$addr/sample/app:1.0" sample/app:1.0
step "$berth" load -i tests/fixtures/busybox-1.35
step "$berth" tag "$("$berth" images -q --filter dangling=true | head -1)" busybox:1.35
step "$berth" images
step "$berth" run --rm sample/app:1.0
step "$berth" run -d --name ticker busybox:1.35 sh -c 'for i in 1 2 3; do echo tick $i; sleep 0.2; done; sleep 30'
sleep 1
step "$berth" ps
step "$berth" logs ticker
step "$berth" stop -t 1 ticker
step "$berth" ps -a
step "$berth" rm ticker
kill $registry_pid 2>/dev/null || true
rm -rf "$out"
