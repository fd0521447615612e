#!/usr/bin/env bash
# `berth build` vs `buildah bud --layers --runtime runc` (Debian buildah
# 1.28; its default crun refuses this hybrid cgroup host) and Debian
# dockerd's classic builder (DOCKER_BUILDKIT=0), same run, interleaved
# (bench/harness.py), each with its own private store:
#   (a) FROM scratch, COPY a static busybox, one RUN;
#   (b) FROM busybox, COPY a 100 MB, 5,000-file context, three RUNs;
# each as a cold build (caches emptied first), a fully cached rebuild, and
# a rebuild after one changed file.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
./scripts/dist.sh >/dev/null
berth=$PWD/target/dist-bin/berth
work=$(mktemp -d /var/tmp/berth-bench-build.XXXXXX)
dockerd_pid=""
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  buildah --root "$work/buildah" --runroot "$work/buildah-run" rm -a >/dev/null 2>&1 || true
  umount -R "$work/buildah" 2>/dev/null || true
  umount -R "$work/docker" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
B="$berth --root $work/berth --runroot $work/berth-run"
$B load -i tests/fixtures/busybox-1.35 >/dev/null
$B tag sha256:34bf58e478a3177ce60c5882e166493671b970307c68cf12ad89a04d67df3f23 busybox:1.35
$B save -o "$work/busybox.tar" busybox:1.35

# (a): the busybox binary from the fixture's layer.
mkdir -p "$work/a"
layer=$(python3 -c "
import json,sys
d='tests/fixtures/busybox-1.35'
m=json.load(open(d+'/index.json'))['manifests'][0]['digest'].split(':')[1]
print(d+'/blobs/sha256/'+json.load(open(d+'/blobs/sha256/'+m))['layers'][0]['digest'].split(':')[1])")
tar -xf "$layer" -C "$work/a" ./bin/busybox
mv "$work/a/bin/busybox" "$work/a/busybox" && rmdir "$work/a/bin"
cat > "$work/a/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin && /bin/busybox --install -s && echo ok > /ok"]
EOF
# (b): 5,000 files of 20 KB of random bytes.
mkdir -p "$work/b/data"
python3 - "$work/b/data" <<'EOF'
import os, sys
d = sys.argv[1]
for i in range(5000):
    sub = os.path.join(d, f"d{i // 100:02d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:04d}"), "wb") as f:
        f.write(os.urandom(20 * 1024))
EOF
cat > "$work/b/Dockerfile" <<'EOF'
FROM busybox:1.35
COPY data /data
RUN find /data -type f | wc -l > /count
RUN du -s /data > /du
RUN cat /count /du > /summary
EOF

BA="buildah --root $work/buildah --runroot $work/buildah-run --storage-driver overlay"
$BA pull "docker-archive:$work/busybox.tar" >/dev/null 2>&1
$BA tag "$($BA images -q | head -1)" busybox:1.35 >/dev/null 2>&1 || true

D=""
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
  start_private_dockerd
  $D load -i "$work/busybox.tar" >/dev/null 2>&1 || D=""
fi

runs=${RUNS:-5}
for c in a b; do
  ctx="$work/$c"
  cmds=("berth=exec $B build -q -t bench-$c $ctx"
        "buildah=exec $BA bud --layers --runtime runc -q -t bench-$c $ctx")
  reset="$B builder prune -f >/dev/null; $B rmi -f bench-$c >/dev/null 2>&1 || true; $BA rmi -a -f >/dev/null 2>&1 || true; $BA pull docker-archive:$work/busybox.tar >/dev/null 2>&1; $BA tag \$($BA images -q | head -1) busybox:1.35 >/dev/null 2>&1 || true"
  if [ -n "$D" ]; then
    cmds+=("docker (classic)=env DOCKER_BUILDKIT=0 $D build -q -t bench-$c $ctx")
    reset="$reset; $D rmi -f bench-$c >/dev/null 2>&1 || true; $D builder prune -af >/dev/null 2>&1 || true; $D image prune -f >/dev/null 2>&1 || true"
  fi
  python3 bench/harness.py "($c) cold build" "$runs" "sync; echo 3 > /proc/sys/vm/drop_caches; $reset" -- "${cmds[@]}"
  python3 bench/harness.py "($c) fully cached rebuild" "$((runs * 2))" "true" -- "${cmds[@]}"
  if [ "$c" = a ]; then
    # Trailing bytes: the binary changes and still runs.
    change="head -c 16 /dev/urandom >> $ctx/busybox"
  else
    change="head -c 20480 /dev/urandom > $ctx/data/d07/f0742"
  fi
  python3 bench/harness.py "($c) rebuild after one changed file" "$((runs * 2))" "$change" -- "${cmds[@]}"
done
echo "Goals: cached rebuild <= 0.15x buildah for (a), <= 0.05x for (b); cold build <= 0.5x buildah."
