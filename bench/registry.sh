#!/usr/bin/env bash
# Ship: push and pull of a single-layer 52 MB image, berth's client and
# registry vs skopeo and Debian's docker-registry (distribution 2.8), same
# run, interleaved; then 20 concurrent pulls of the layer from each server.
# berth pull also unpacks the layer into its store (skopeo only writes an
# OCI directory), so the pull ratio favours skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/dist.sh >/dev/null
berth=$PWD/target/dist-bin/berth
work=$(mktemp -d /var/tmp/berth-bench-reg.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
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
  "rm -rf $work/reg/* $work/dist/*" -- \
  "berth push (berth registry)=exec $B push -q $rb/bench/big:1" \
  "skopeo copy (distribution)=exec skopeo --insecure-policy copy -q --dest-tls-verify=false oci:$work/oci docker://$rd/bench/big:1"
echo "Goal: berth <= 0.35x skopeo + distribution."
# Both registries hold the image for the pulls.
$B push -q "$rb/bench/big:1" >/dev/null
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/oci" "docker://$rd/bench/big:1"
python3 bench/harness.py "pull of a 52 MB single-layer image" "$runs" \
  "rm -rf $work/pulled $work/skopeo-pulled" -- \
  "berth pull (berth registry)=exec $berth --root $work/pulled --runroot $work/run2 pull -q $rb/bench/big:1" \
  "skopeo copy (distribution)=exec skopeo --insecure-policy copy -q --src-tls-verify=false docker://$rd/bench/big:1 oci:$work/skopeo-pulled"
echo "Goal: berth <= 0.35x skopeo + distribution."
python3 - "$rb" "$rd" <<'PY'
import sys, threading, time, urllib.request
def run(host, path, n=20):
    done = []
    def one():
        with urllib.request.urlopen(f"http://{host}{path}") as r:
            size = 0
            while True:
                b = r.read(1 << 20)
                if not b: break
                size += len(b)
            done.append(size)
    ts = [threading.Thread(target=one) for _ in range(n)]
    t = time.perf_counter()
    for x in ts: x.start()
    for x in ts: x.join()
    dt = time.perf_counter() - t
    return sum(done) / dt / 1e6, dt
import json
rb, rd = sys.argv[1:]
def layer_of(host, repo):
    # Each server's own manifest: skopeo may have recompressed the layer.
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/1", headers={"Accept":
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["layers"][0]["digest"]
res = {}
for name, host, repo in (("berth registry", rb, "bench/big"), ("distribution", rd, "bench/big")):
    layer = layer_of(host, repo)
    best = max(run(host, f"/v2/{repo}/blobs/{layer}")[0] for _ in range(3))
    res[name] = best
print("\n## 20 concurrent pulls of the 52 MB layer (best of 3)\n")
print("| server | throughput (MB/s) |\n| --- | --- |")
for k, v in res.items():
    print(f"| {k} | {v:.0f} |")
print(f"\nberth registry / distribution: {res['berth registry'] / res['distribution']:.2f}x. Goal: >= 2x.")
PY
