.PHONY: demo test lint bench deps fuzz dist

# The main job: Build → Ship → Run on a local store.
demo:
	./scripts/demo.sh

# Every test, with the Debian peers they use installed first.
test: deps
	./scripts/test.sh

# The shipped binaries (static, LTO): target/dist-bin/.
dist:
	./scripts/dist.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

deps:
	./scripts/install-deps.sh

bench: deps
	cargo build --release -p berth
	./bench/run.sh

# Coverage-guided fuzzing of the untrusted-input parsers (cargo install cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	for t in reference layer load_index registry_input dockerfile daemon_request; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; \
	done
