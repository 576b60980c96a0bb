#!/usr/bin/env bash
# The Node.js example, whole: its pinned packages (`npm ci`, from
# package-lock.json), what it needs started (see ../start-network.sh), then
# the consult. Exits 0 only if every step did what it should.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
(cd "$here" && npm ci --silent --no-audit --no-fund)
source "$here/../start-network.sh"
node "$here/consult.js"
