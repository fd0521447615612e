#!/usr/bin/env bash
# Builds the shipped binaries into target/dist-bin: statically linked
# (glibc), LTO, panic=abort, stripped. berth-runc is optimised for size
# (profile dist-small), berth for speed (profile dist).
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
# With an explicit --target, RUSTFLAGS reach only the target's crates, not
# build scripts or proc-macros (which cannot be static).
export RUSTFLAGS="-C target-feature=+crt-static"
cargo build --profile dist-small --target "$host" -p berth-runtime --bin berth-runc
cargo build --profile dist --target "$host" -p berth --bin berth
mkdir -p target/dist-bin
cp "target/$host/dist-small/berth-runc" "target/$host/dist/berth" target/dist-bin/
echo "target/dist-bin/berth-runc target/dist-bin/berth"
