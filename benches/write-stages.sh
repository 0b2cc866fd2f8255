#!/usr/bin/env bash
# Where a durable write's time goes: a 3-node Tandem on 127.0.0.1 (defaults: fsync on commit,
# mutual TLS between nodes), then `tandem bench kv-put --stages` at concurrency 1 and 64 against
# all three servers (the active node first, as a load balancer would send writes), which prints
# the run's figures and each server's write stages from /metrics.
#
# Usage: benches/write-stages.sh [duration]                 (default 10s per run)
#        TANDEM=/path/to/tandem benches/write-stages.sh ...  (measure that build instead)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10s}"
. benches/lib/three-nodes.sh
ADDRS="$LEADER"
for i in 1 2 3; do [ "${API[$i]}" != "$LEADER" ] && ADDRS+=",${API[$i]}"; done

echo "== machine"
echo "$(nproc) cores, $(uname -sr), $(date -u '+%F %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$TANDEM" bench disk --data-dir "$WORK" --duration 3s
for c in 1 64; do
    echo "== kv-put c=$c (servers: $ADDRS)"
    "$TANDEM" bench kv-put --addr "$ADDRS" --concurrency "$c" --duration "$DURATION" --stages
done
