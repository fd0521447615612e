.PHONY: demo test lint bench deps

# The main job: Build → Ship → Run on a local store.
demo:
	./scripts/demo.sh

# Every test, with the Debian peers they use installed first.
test: deps
	./scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

deps:
	./scripts/install-deps.sh

bench: deps
	cargo build --release -p berth
	./bench/run.sh
