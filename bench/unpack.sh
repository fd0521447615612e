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
hyperfine --style none --warmup 1 --runs "$runs" --export-json "$work/h.json" \
  --prepare "rm -rf $work/t $work/b $work/u; mkdir -p $work/t; sync" \
  -n "berth load" "$berth --root $work/b load -q -i $img" \
  -n "tar -xzf" "tar -xzf $img/blobs/sha256/$layer -C $work/t" \
  -n "umoci unpack" "umoci unpack --image $img:$tag $work/u" >/dev/null
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
m = {k: v["median"] for k, v in r.items()}
b = m["berth load"]
print("## unpack debian-bookworm-minbase (49 MB gzip layer)\n")
print("| tool | median (s) | berth / tool |")
print("| --- | --- | --- |")
for k in ["berth load", "tar -xzf", "umoci unpack"]:
    print(f"| {k} | {m[k]:.3f} | {b / m[k]:.2f}x |")
print(f"\nberth vs tar -xzf: {b / m['tar -xzf']:.2f}x the time (goal <= 1.2x); "
      f"umoci / berth: {m['umoci unpack'] / b:.2f}x faster (goal >= 2x)\n")
PY
