#!/usr/bin/env bash
# Ship: push and pull of a single-layer 52 MB image, berth's client and
# registry vs skopeo and Debian's docker-registry (distribution 2.8), same
# run, interleaved; then 20 concurrent pulls of the layer from each server.
# berth pull also unpacks the layer into its store, ready to run; skopeo
# does the same work when it copies into containers-storage (podman's
# store: decompressed and unpacked), and less when it copies into an OCI
# directory (the blob only). Pulls are timed against both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/dist.sh >/dev/null
berth=$PWD/target/dist-bin/berth
work=$(mktemp -d /var/tmp/berth-bench-reg.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  unmount_storage
  rm -rf "$work"
}
# containers-storage leaves its overlay directory bind-mounted.
unmount_storage() {
  for m in "$work"/cs/*/overlay; do
    mountpoint -q "$m" && umount "$m"
  done
  return 0
}
trap cleanup EXIT
B="$berth --root $work/src --runroot $work/run"
mkdir -p "$work/ctx"
head -c 52M /dev/urandom > "$work/ctx/blob.bin"
tar -C "$work/ctx" -cf "$work/layer.tar" .
$B import "$work/layer.tar" bench/big:1 >/dev/null
$B save --format oci-dir -o "$work/oci" bench/big:1

# berth registry on a port of its choosing.
"$berth" registry serve --addr 127.0.0.1:0 --storage "$work/reg" > "$work/reg.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/reg.log" && break; sleep 0.05; done
rb=$(sed -n 's/^berth registry listening on //p' "$work/reg.log")
# distribution on a free port.
pd=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/dist.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/dist
http:
  addr: 127.0.0.1:$pd
YML
docker-registry serve "$work/dist.yml" >/dev/null 2>&1 &
pids+=($!)
rd=127.0.0.1:$pd
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$pd))" 2>/dev/null && break; sleep 0.05; done
$B tag bench/big:1 "$rb/bench/big:1"
runs=${RUNS:-10}
python3 bench/harness.py "push of a 52 MB single-layer image" "$runs" \
  "rm -rf $work/reg/* $work/dist/*; sync" -- \
  "berth push (berth registry)=exec $B push -q $rb/bench/big:1" \
  "skopeo copy (distribution)=exec skopeo --insecure-policy copy -q --dest-tls-verify=false oci:$work/oci docker://$rd/bench/big:1"
echo "Goal: berth <= 0.35x skopeo + distribution."
# Both registries hold the image for the pulls.
$B push -q "$rb/bench/big:1" >/dev/null
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/oci" "docker://$rd/bench/big:1"
# Each pull into a destination of its own, none deleted while timing (a
# deletion of thousands of files just before makes ext4's inode allocator
# scan the recently deleted ones, seconds of system time for whoever
# creates files next).
python3 bench/harness.py "pull of a 52 MB single-layer image" "$runs" \
  "sync; mkdir -p $work/skopeo-pulled" -- \
  "berth pull (berth registry)=exec $berth --root $work/pulled/{n} --runroot $work/run2 pull -q $rb/bench/big:1" \
  "skopeo copy to containers-storage (distribution)=exec skopeo --insecure-policy copy -q --src-tls-verify=false docker://$rd/bench/big:1 containers-storage:[overlay@$work/cs/big{n}+$work/csrun/big{n}]bench/big:1" \
  "skopeo copy to an OCI directory (distribution)=exec skopeo --insecure-policy copy -q --src-tls-verify=false docker://$rd/bench/big:1 oci:$work/skopeo-pulled/big{n}"
echo "Goal: berth <= 0.35x skopeo + distribution (the same work: into containers-storage)."

# 20 concurrent pulls of the layer from each server (bench/pull20.py),
# with the CPU time each server used.
layer_of() {
  curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
    "http://$1/v2/bench/big/manifests/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])'
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
concurrent() {
  local host=$1 pid=$2 mode=$3 layer t0 mbs
  layer=$(layer_of "$host")
  t0=$(ticks "$pid")
  mbs=$(python3 bench/pull20.py "$host" "/v2/bench/big/blobs/$layer" "$mode")
  echo "$mbs $(( $(ticks "$pid") - t0 ))"
}
# "copy": clients that copy every byte (their copies share the 2 cores
# with the server); "discard": clients that let the kernel drop the bytes
# (MSG_TRUNC), which measures the servers themselves.
for mode in copy discard; do
  read -r cb tb < <(concurrent "$rb" "${pids[0]}" "$mode")
  read -r cd_ td < <(concurrent "$rd" "${pids[1]}" "$mode")
  echo
  echo "## 20 concurrent pulls of the 52 MB layer (best of 3 rounds, clients: $mode)"
  echo
  echo "| server | throughput (MB/s) | server CPU for the 3 rounds (s) |"
  echo "| --- | --- | --- |"
  echo "| berth registry | $cb | $(python3 -c "print($tb/100)") |"
  echo "| distribution | $cd_ | $(python3 -c "print($td/100)") |"
  echo
  python3 -c "print(f'berth registry / distribution ($mode): {$cb/$cd_:.2f}x throughput, {$td/max($tb,1):.1f}x less server CPU. Goal: >= 2x throughput.')"
done

# The debian image (one 49 MB gzip layer, 127 MB unpacked), both ways.
deb=../shared/images/debian-bookworm-minbase
if [ -d "$deb" ]; then
  debid=$($B load -i "$deb" | sed -n 's/^Loaded image ID: //p')
  $B tag "$debid" "$rb/bench/debian:1"
  python3 bench/harness.py "push of the debian image" "$runs" \
    "rm -rf $work/reg/* $work/dist/*; sync" -- \
    "berth push (berth registry)=exec $B push -q $rb/bench/debian:1" \
    "skopeo copy (distribution)=exec skopeo --insecure-policy copy -q --dest-tls-verify=false oci:$deb docker://$rd/bench/debian:1"
  echo "Goal: berth <= 0.35x skopeo + distribution."
  $B push -q "$rb/bench/debian:1" >/dev/null
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$deb" "docker://$rd/bench/debian:1"
  python3 bench/harness.py "pull of the debian image" "$runs" \
    "sync; mkdir -p $work/skopeo-pulled" -- \
    "berth pull (berth registry)=exec $berth --root $work/deb-pulled/{n} --runroot $work/run2 pull -q $rb/bench/debian:1" \
    "skopeo copy to containers-storage (distribution)=exec skopeo --insecure-policy copy -q --src-tls-verify=false docker://$rd/bench/debian:1 containers-storage:[overlay@$work/cs/deb{n}+$work/csrun/deb{n}]bench/debian:1" \
    "skopeo copy to an OCI directory (distribution)=exec skopeo --insecure-policy copy -q --src-tls-verify=false docker://$rd/bench/debian:1 oci:$work/skopeo-pulled/deb{n}"
  echo "Goal: berth <= 0.35x skopeo + distribution (the same work: decompressed and unpacked into containers-storage, 127 MB of files)."
  echo "Into an OCI directory skopeo only stores the blob; that row is for reference."
fi

