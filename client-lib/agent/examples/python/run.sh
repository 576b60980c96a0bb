#!/usr/bin/env bash
# The Python example, whole: a virtual environment with the pinned grpcio,
# stubs generated from proto/ (not committed), what the example needs
# started (see ../start-network.sh), then the consult. Exits 0 only if
# every step did what it should.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"

venv="${SAMENOP_PYTHON_VENV:-$here/.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "making a virtual environment in $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

gen="$(mktemp -d)"
well_known="$("$venv/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
"$venv/bin/python" -m grpc_tools.protoc -I "$repo/proto" -I "$well_known" \
    --python_out="$gen" --grpc_python_out="$gen" \
    "$repo"/proto/samenop/v1/*.proto "$repo"/proto/samenop/agent/v1/agent.proto

source "$here/../start-network.sh"
cleanup() {
    if declare -F stop_dev_server >/dev/null; then stop_dev_server; fi
    rm -rf "$gen"
}
trap cleanup EXIT
PYTHONPATH="$gen" "$venv/bin/python" "$here/consult.py"
