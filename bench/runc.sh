#!/usr/bin/env bash
# `run` of /bin/true from a busybox bundle (create + start + wait + delete):
# berth-runc vs runc (and crun, which refuses this hybrid-cgroup host unless
# started in a private mount namespace without the cgroup2 mount), same run.
set -euo pipefail
cd "$(dirname "$0")/.."
# The shipped binary (static, LTO, size-optimised), as a user would run it.
./scripts/dist.sh >/dev/null
runc_bin=$PWD/target/dist-bin/berth-runc
work=$(mktemp -d /var/tmp/berth-bench-runc.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs"
tar -xzf tests/fixtures/busybox-1.35/blobs/sha256/e524c65fa47c8a51ff3bb6c4851f16014cad18c3e1a473a994ac26bff03dacc6 -C "$work/bundle/rootfs"
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(sys.argv[1], "w"))
PY
n=0
cmds=("berth-runc=exec $runc_bin --root $work/s1 run --bundle $work/bundle b{n}"
      "runc=exec runc --root $work/s2 run --bundle $work/bundle r{n}")
# BASELINE=DIR: an earlier build's berth-runc (DIR/berth-runc) in the
# same run.
if [ -n "${BASELINE:-}" ]; then
  cmds+=("berth-runc (baseline)=exec $BASELINE/berth-runc --root $work/s4 run --bundle $work/bundle o{n}")
fi
if command -v crun >/dev/null; then
  # crun needs a shell around it here, which adds about 1 ms.
  cmds+=("crun (private mount ns, no cgroup2)=cd $work/bundle && unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; crun --root $work/s3 run c\$RANDOM'")
fi
python3 bench/harness.py "runc run /bin/true (busybox bundle)" "${RUNS:-20}" "true" -- "${cmds[@]}"
echo "Goal: berth-runc median <= 8 ms and <= 0.3x runc."
if [ -x /usr/bin/time ]; then
  rss() { /usr/bin/time -f %M sh -c "cd $work/bundle && $1" 2>&1 >/dev/null | tail -1; }
  echo
  echo "Peak RSS (KB, GNU time %M, whole run): berth-runc $(rss "$runc_bin --root $work/s1 run rss1"), runc $(rss "runc --root $work/s2 run rss2"). Goal: <= 3 MB."
fi
