#!/usr/bin/env bash
# Runs every benchmark; each prints medians and ratios and appends them to
# bench/results/latest.md. Copy the figures into bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
: > bench/results/latest.md
for b in bench/unpack.sh bench/runc.sh bench/run_container.sh bench/daemon.sh bench/registry.sh bench/build.sh; do
  "$b" | tee -a bench/results/latest.md
done
