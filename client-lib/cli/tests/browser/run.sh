#!/usr/bin/env bash
# The web inbox in real headless Chromium, driven by Playwright
# (playwright-core, with the Chromium installed on the machine): builds
# samenop-server and samenop, starts a `samenop-server dev` on a free
# loopback port with a fresh PKI, makes profiles for the demo people, serves
# Mila's inbox (`samenop inbox --web`, a child-expertise specialist), and
# runs inbox.mjs against it. Exits 0 only if every step did what it should.
#
# Chromium: $SAMENOP_CHROMIUM, else `chromium` on PATH. Without one the run
# is skipped with one line, unless SAMENOP_REQUIRE_BROWSER=1 (CI), which
# makes it a failure. Screenshots for docs/: SAMENOP_SCREENSHOTS=DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"

chromium="${SAMENOP_CHROMIUM:-$(command -v chromium || true)}"
if [[ -z "$chromium" ]]; then
    if [[ "${SAMENOP_REQUIRE_BROWSER:-}" == 1 ]]; then
        echo "no Chromium found (apt-get install chromium, or set SAMENOP_CHROMIUM)" >&2
        exit 1
    fi
    echo "browser tests skipped: no Chromium (apt-get install chromium, or set SAMENOP_CHROMIUM)"
    exit 0
fi
export SAMENOP_CHROMIUM="$chromium"

(cd "$here" && npm ci --silent --no-audit --no-fund)
dev_packages=(samenop-server samenop-cli)
source "$repo/tests/dev-server.sh"

export SAMENOP_BIN="$bin/samenop"
export SAMENOP_CONFIG="$work/config.toml"
export XDG_DATA_HOME="$work/data"
export NO_COLOR=1
"$SAMENOP_BIN" --config "$SAMENOP_CONFIG" profile import-dev --pki "$work/pki" >/dev/null

"$SAMENOP_BIN" --config "$SAMENOP_CONFIG" --profile jeugdbescherming/mila inbox --web \
    >"$work/inbox.out" 2>"$work/inbox.err" &
pids+=($!)
for _ in $(seq 1 200); do
    [[ -s "$work/inbox.out" ]] && break
    sleep 0.05
done
address="$(head -n 1 "$work/inbox.out")"
if [[ "$address" != http://127.0.0.1:* ]]; then
    echo "samenop inbox --web did not start:" >&2
    cat "$work/inbox.err" >&2
    exit 1
fi
node "$here/inbox.mjs" "$address"
