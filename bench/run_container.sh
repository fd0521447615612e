#!/usr/bin/env bash
# `berth run --rm busybox true` vs `podman run --rm --network none --runtime
# runc busybox true` and `docker run --rm --network none busybox true`
# (Debian's dockerd, private: its own data root and socket), same run,
# interleaved (bench/harness.py, no shell around any). Each has its own
# store with the busybox fixture loaded.
# Podman 4.3's default nofile/nproc rlimits cannot be set on a host without
# CAP_SYS_RESOURCE, so it gets a containers.conf with no default ulimits
# (berth sets none either).
# DETACHED=1: `run -d --rm` instead (returns once the container runs: the
# detached monitor, a helper process of its own, is started and reports).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="--rm"
label="run --rm busybox true"
if [ -n "${DETACHED:-}" ]; then
  mode="-d --rm"
  label="run -d --rm busybox true"
fi
. bench/lib.sh
# The shipped build (scripts/dist.sh: static, LTO) is what is measured.
./scripts/dist.sh >/dev/null
berth=$PWD/target/dist-bin/berth
work=$(mktemp -d /var/tmp/berth-bench-run.XXXXXX)
cleanup() {
  podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver overlay system reset -f >/dev/null 2>&1 || true
  umount -R "$work/podman" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
dockerd_pid=""
stop_dockerd() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    umount -R "$work/docker" 2>/dev/null || true
  fi
}
trap 'stop_dockerd; cleanup' EXIT
B="$berth --root $work/berth --runroot $work/berth-run"
$B load -i tests/fixtures/busybox-1.35 >/dev/null
$B tag sha256:34bf58e478a3177ce60c5882e166493671b970307c68cf12ad89a04d67df3f23 busybox:1.35
$B save -o "$work/busybox.tar" busybox:1.35
cmds=("berth=exec $B run $mode busybox:1.35 true")
# BASELINE=DIR: an earlier build's berth (DIR/berth) in the same run, to
# show a change costs nothing.
if [ -n "${BASELINE:-}" ]; then
  O="$BASELINE/berth --root $work/berth-old --runroot $work/berth-old-run"
  $O load -i tests/fixtures/busybox-1.35 >/dev/null
  $O tag sha256:34bf58e478a3177ce60c5882e166493671b970307c68cf12ad89a04d67df3f23 busybox:1.35
  cmds+=("berth (baseline)=exec $O run $mode busybox:1.35 true")
fi
if command -v podman >/dev/null; then
  printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
  P="podman --root $work/podman --runroot $work/podman-run --storage-driver overlay"
  $P load -i "$work/busybox.tar" >/dev/null 2>&1
  cmds+=("podman (runc)=exec env CONTAINERS_CONF=$work/containers.conf $P run $mode --network none --runtime runc busybox:1.35 true")
fi
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
  start_private_dockerd
  if $D load -i "$work/busybox.tar" >/dev/null 2>&1; then
    cmds+=("docker=exec $D run $mode --network none busybox:1.35 true")
  else
    echo "dockerd did not start; see its log:" >&2
    tail -5 "$work/docker/dockerd.log" >&2
  fi
fi
python3 bench/harness.py "$label" "${RUNS:-20}" "true" -- "${cmds[@]}"
echo "Goal: berth <= 0.1x podman."
