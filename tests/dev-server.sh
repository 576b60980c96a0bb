# Sourced by the scripts that need a running `samenop-server dev` (the
# agent's examples, the web inbox's browser tests): builds the packages
# named in $dev_packages (samenop-server and whatever the caller needs),
# starts a `samenop-server dev` on a free loopback port with a fresh PKI in
# a temporary directory, and waits until it serves. Leaves $repo, $bin (the
# built binaries), $work (the temporary directory, removed at exit), $port
# and $pids (every process started, stopped at exit; a caller adds its own).

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

echo "building ${dev_packages[*]}"
build=()
for package in "${dev_packages[@]}"; do build+=(-p "$package"); done
(cd "$repo" && cargo build --quiet --locked "${build[@]}")
bin="${CARGO_TARGET_DIR:-$repo/target}/debug"

work="$(mktemp -d)"
pids=()
stop_dev_server() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap stop_dev_server EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin/samenop-server" dev --pki "$work/pki" --data-dir "$work/server" --listen "127.0.0.1:$port" \
    >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
    [[ -f "$work/pki/demo-network.json" ]] && break
    sleep 0.05
done
if [[ ! -f "$work/pki/demo-network.json" ]]; then
    echo "samenop-server dev did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
