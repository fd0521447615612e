#!/usr/bin/env bash
# Unpacking the Debian bookworm minbase image (one 49 MB gzip layer, 127 MB
# on disk): berth load vs umoci unpack vs tar -xzf of the same layer, in the
# same run, with hyperfine. Page cache is warm for all three.
set -euo pipefail
cd "$(dirname "$0")/.."
img=${DEBIAN_IMAGE:-../shared/images/debian-bookworm-minbase}
[ -f "$img/index.json" ] || { echo "unpack bench: no Debian OCI layout at $img (set DEBIAN_IMAGE)" >&2; exit 1; }
berth=$PWD/target/release/berth
[ -x "$berth" ] || cargo build --release -p berth
manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$img/index.json")
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"].split(":")[1])' "$img/blobs/sha256/$manifest")
tag=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$img/index.json")
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
runs=${RUNS:-10}
python3 bench/harness.py "unpack debian-bookworm-minbase (one 49 MB gzip layer, 127 MB unpacked)" "$runs" \
  "rm -rf $work/t $work/b $work/u; mkdir -p $work/t; sync; echo 3 > /proc/sys/vm/drop_caches || true; cat $img/blobs/sha256/* > /dev/null" -- \
  "berth load=$berth --root $work/b load -q -i $img" \
  "tar -xzf=tar -xzf $img/blobs/sha256/$layer -C $work/t" \
  "umoci unpack=umoci unpack --image $img:$tag $work/u"
echo "Goals: berth <= 1.2x the time of tar -xzf; >= 2x faster than umoci unpack."
