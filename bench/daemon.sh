#!/usr/bin/env bash
# The docker CLI 28 (/usr/local/bin/docker) against `berth daemon` and
# against a private Debian dockerd (--bridge none --iptables=false), same
# run, interleaved (bench/harness.py): `docker run --rm busybox true`
# one at a time, then 20 at once (the wall time of the batch, so the
# throughput is 20 / that). Then the daemons' idle RSS and the memory a
# running container costs beside its process (berth: its monitor; docker:
# containerd-shim).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
./scripts/dist.sh >/dev/null
berth=$PWD/target/dist-bin/berth
work=$(mktemp -d /var/tmp/berth-bench-daemon.XXXXXX)
dockerd_pid=""
berth_pid=""
cleanup() {
  if [ -n "$berth_pid" ] && ! kill -0 "$berth_pid" 2>/dev/null; then
    echo "berth daemon exited; its log:" >&2
    tail -20 "$work/berth-daemon.log" >&2
  fi
  [ -n "$berth_pid" ] && kill "$berth_pid" 2>/dev/null && wait "$berth_pid" 2>/dev/null || true
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    umount -R "$work/docker" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
DOCKER=/usr/local/bin/docker
B="$berth --root $work/berth --runroot $work/berth-run"
$B load -i tests/fixtures/busybox-1.35 >/dev/null
$B tag sha256:34bf58e478a3177ce60c5882e166493671b970307c68cf12ad89a04d67df3f23 busybox:1.35
$B save -o "$work/busybox.tar" busybox:1.35
$B daemon -H "unix://$work/berth.sock" >"$work/berth-daemon.log" 2>&1 &
berth_pid=$!
for _ in $(seq 100); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
BD="$DOCKER -H unix://$work/berth.sock"
start_private_dockerd
[ -n "$D" ] || { echo "dockerd did not start" >&2; tail -5 "$work/docker/dockerd.log" >&2; exit 1; }
DD="$DOCKER -H unix://$work/docker/docker.sock"
$DD load -i "$work/busybox.tar" >/dev/null
export DOCKER_CONFIG="$work/docker-config"
python3 bench/harness.py "docker run --rm busybox true (docker CLI 28)" "${RUNS:-20}" "true" -- \
  "berth daemon=exec $BD run --rm busybox:1.35 true" \
  "dockerd=exec $DD run --rm --network none busybox:1.35 true"
# 20 runs at once: CLI and extra run flags as arguments.
cat > "$work/batch.sh" <<'SCRIPT'
#!/usr/bin/env bash
set -e
pids=()
for _ in $(seq 20); do $1 run --rm $2 busybox:1.35 true >/dev/null & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
SCRIPT
chmod +x "$work/batch.sh"
python3 bench/harness.py "20 concurrent docker run --rm (wall time of the batch)" "${BATCHES:-5}" "true" -- \
  "berth daemon=$work/batch.sh '$BD' ''" \
  "dockerd=$work/batch.sh '$DD' '--network none'"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
echo "## Memory"
echo
echo "| | berth daemon | dockerd (+ containerd) |"
echo "| --- | --- | --- |"
containerd_pid=$(pgrep -f "containerd --config /var/run/docker/containerd" | head -1 || true)
cd_rss=0
for p in $(pgrep -x containerd); do cd_rss=$((cd_rss + $(rss "$p"))); done
# Idle: fifteen seconds without a request (the daemon ends idle pool
# threads after 3 s and gives freed memory back after 5 to 10 s).
sleep 15
echo "| idle RSS (15 s after the runs) | $(( $(rss $berth_pid) / 1024 )) MB | $(( $(rss $dockerd_pid) / 1024 )) MB (+ $((cd_rss / 1024)) MB containerd) |"
# Two running containers each: the second one's monitor (shim), whose
# shared pages (the binary's text) the first already has.
for n in 1 2; do
  $BD run -d --name idle$n busybox:1.35 sleep 60 >/dev/null
  $DD run -d --name idle$n --network none busybox:1.35 sleep 60 >/dev/null
done
sleep 1
mon=$(pgrep -f -- "--berth-helper monitor $work/berth" | tail -1)
shim=$(pgrep -f containerd-shim | tail -1)
roll() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/smaps_rollup"; }
private() { echo $(( $(roll "$1" Private_Clean) + $(roll "$1" Private_Dirty) )); }
echo "| per container (monitor / shim): RSS | $(rss "$mon") kB | $(rss "$shim") kB |"
echo "| per container (monitor / shim): private (USS) | $(private "$mon") kB | $(private "$shim") kB |"
echo "| per container (monitor / shim): private dirty | $(roll "$mon" Private_Dirty) kB | $(roll "$shim" Private_Dirty) kB |"
for n in 1 2; do
  $BD rm -f idle$n >/dev/null
  $DD rm -f idle$n >/dev/null
done
echo
echo "Goals: berth <= 0.2x dockerd's median, >= 5x its throughput; idle RSS <= 15 MB; monitor <= 1 MB."
