#!/usr/bin/env bash
# Runs every test (release build, as the peers and layer tests move real
# data) and closes with one summary line over all test binaries.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
# Tests that cannot run on this host append a line here (never a silent pass).
BERTH_SKIP_LOG=$(mktemp)
export BERTH_SKIP_LOG
trap 'rm -f "$log" "$BERTH_SKIP_LOG"' EXIT
cargo test --workspace --release --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The architecture's rule: no module import circle in any crate.
python3 scripts/module-cycles.py || status=1
skipped=$(wc -l < "$BERTH_SKIP_LOG")
awk -v s="$skipped" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "\ntests: %d passed (%d of them skipped on this host), %d failed, %d ignored\n", p, s, f, g }' "$log"
if [ "$skipped" -gt 0 ]; then
  sed 's/^/skipped: /' "$BERTH_SKIP_LOG"
fi
exit "$status"
