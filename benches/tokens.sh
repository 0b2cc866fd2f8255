#!/usr/bin/env bash
# Tokens on this machine: issue and verify throughput on one server, and the time from a key
# rotation to the new key in every server's JWKS.
# Starts a 3-node cluster of the release binary on 127.0.0.1, then:
#   - token-issue and token-verify against one server (a standby: tokens are served locally);
#   - key-rotation: 20 rotations, each timed until all three servers serve the new key.
# Usage: benches/tokens.sh [duration]   (default 10s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10s}"
. benches/lib/three-nodes.sh
for i in 1 2 3; do [ "${API[$i]}" != "$LEADER" ] && ONE="${API[$i]}" && break; done
echo "server $ONE (a standby), $(nproc) cores, $(date -u +%F)"
for c in 1 16; do
    printf '%-24s ' "token-issue c=$c"
    "$TANDEM" bench token-issue --addr "$ONE" --concurrency "$c" --duration "$DURATION" --json
    printf '%-24s ' "token-verify c=$c"
    "$TANDEM" bench token-verify --addr "$ONE" --concurrency "$c" --duration "$DURATION" --json
done
printf '%-24s ' "key-rotation"
"$TANDEM" bench key-rotation --addr "${API[1]},${API[2]},${API[3]}" --concurrency 1 --ops 20 --json
