# Sourced by the benchmarks.

# Starts a private Debian dockerd (its own data root, exec root, socket
# and containerd namespaces; no bridge or iptables) under "$work/docker";
# sets dockerd_pid and D (the docker client command for it), and returns
# once it answers (D is empty if it never does).
start_private_dockerd() {
  mkdir -p "$work/docker"
  printf '{"deprecated-key-path": "%s/docker/key.json"}\n' "$work" > "$work/docker/daemon.json"
  local ns="berth-bench-$$"
  dockerd --config-file "$work/docker/daemon.json" --data-root "$work/docker/data" \
    --exec-root "$work/docker/exec" --pidfile "$work/docker/pid" \
    -H "unix://$work/docker/docker.sock" --bridge=none --iptables=false --ip-masq=false \
    --containerd-namespace="$ns" --containerd-plugins-namespace="$ns-plugins" \
    >"$work/docker/dockerd.log" 2>&1 &
  dockerd_pid=$!
  D="docker -H unix://$work/docker/docker.sock"
  for _ in $(seq 150); do
    $D version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  D=""
}
