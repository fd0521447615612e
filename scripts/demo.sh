#!/usr/bin/env bash
# The main job: Build → Ship → Run on an embedded default store.
# For now: load the sample image (both docker-archive and OCI forms),
# list and inspect it, and save it back out in both formats.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p berth
berth=$PWD/target/release/berth
export BERTH_ROOT=${BERTH_ROOT:-$(mktemp -d /tmp/berth-demo.XXXXXX)}
out=$(mktemp -d /tmp/berth-demo-out.XXXXXX)
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
echo "store: $BERTH_ROOT"
step "$berth" load -i tests/fixtures/sample-app.docker-save.tar
step "$berth" load -i tests/fixtures/busybox-1.35
step "$berth" tag "$("$berth" images -q --filter dangling=true | head -1)" busybox:1.35
step "$berth" images
step "$berth" image inspect --format '{{json .Config}}' sample/app:1.0
step "$berth" history sample/app:1.0
step "$berth" save -o "$out/app.tar" sample/app:1.0
step "$berth" save --format oci-archive -o "$out/app-oci.tar" sample/app:1.0
step "$berth" system df
step "$berth" rmi sample/app:1.0
step "$berth" load -i "$out/app-oci.tar"
step "$berth" images
rm -rf "$out"
