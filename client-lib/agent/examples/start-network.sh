# Sourced by the examples' run.sh: starts what an example needs unless told
# where it is, and stops it again when the example ends.
#
# Told: set SAMENOP_WIJKTEAM_AGENT and SAMENOP_VEILIG_THUIS_AGENT (the two
# agents' addresses, such as unix:/path/agent.sock) and SAMENOP_NETWORK (the
# demo-network.json of their `samenop-server dev`), and nothing is started.
#
# Not told: builds samenop-server and samenop-agent, starts a
# `samenop-server dev` on a free loopback port with a fresh PKI, and two
# agents on it: one for Wijkteam Demostad-Oost (the contact person's
# organisation), one for Veilig Thuis Demoregio (the specialist's).

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"

if [[ -n "${SAMENOP_WIJKTEAM_AGENT:-}" && -n "${SAMENOP_VEILIG_THUIS_AGENT:-}" && -n "${SAMENOP_NETWORK:-}" ]]; then
    echo "using the agents at $SAMENOP_WIJKTEAM_AGENT and $SAMENOP_VEILIG_THUIS_AGENT"
    return 0
fi

dev_packages=(samenop-server samenop-agent)
source "$repo/tests/dev-server.sh"
export SAMENOP_NETWORK="$work/pki/demo-network.json"

start_agent() { # name, organisation slug, the variable that gets its address
    local dir="$work/agent-$1"
    mkdir -p "$dir"
    cat >"$dir/agent.toml" <<TOML
server = "https://localhost:$port"
ca = "$work/pki/ca.pem"
certificate = "$work/pki/orgs/$2.pem"
key = "$work/pki/orgs/$2.key"
data_dir = "$dir/data"
TOML
    SAMENOP_AGENT_LOG="${SAMENOP_AGENT_LOG:-warn}" "$bin/samenop-agent" run --config "$dir/agent.toml" >"$dir/agent.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do
        [[ -S "$dir/data/run/agent.sock" ]] && break
        sleep 0.05
    done
    if [[ ! -S "$dir/data/run/agent.sock" ]]; then
        echo "samenop-agent for $2 did not start:" >&2
        cat "$dir/agent.log" >&2
        exit 1
    fi
    printf -v "$3" 'unix:%s' "$dir/data/run/agent.sock"
}

start_agent wijkteam wijkteam-demostad-oost SAMENOP_WIJKTEAM_AGENT
start_agent veilig-thuis veilig-thuis-demoregio SAMENOP_VEILIG_THUIS_AGENT
export SAMENOP_WIJKTEAM_AGENT SAMENOP_VEILIG_THUIS_AGENT
echo "samenop-server dev on 127.0.0.1:$port; agents at $SAMENOP_WIJKTEAM_AGENT and $SAMENOP_VEILIG_THUIS_AGENT"
