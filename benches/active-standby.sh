#!/usr/bin/env bash
# Forwarding overhead and graceful / crash failover, measured on this machine.
# Starts a 3-node cluster of the release binary on 127.0.0.1, then:
#   - kv-put and kv-get sent straight to the active node vs. to a standby (which forwards);
#   - tandem bench failover with SIGTERM (graceful step-down) and SIGKILL (crash).
# Usage: benches/active-standby.sh [duration]   (default 10s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10s}"
. benches/lib/three-nodes.sh
for i in 1 2 3; do [ "${API[$i]}" != "$LEADER" ] && STANDBY="${API[$i]}" && break; done
echo "active $LEADER, standby $STANDBY, $(nproc) cores, $(date -u +%F)"
printf '%-24s %s\n' "target" "result"
for c in 1 16; do
    for target in active standby; do
        addr=$LEADER; [ $target = standby ] && addr=$STANDBY
        printf '%-24s ' "kv-put c=$c $target"
        "$TANDEM" bench kv-put --addr "$addr" --concurrency "$c" --duration "$DURATION" --json
    done
done
for target in active standby; do
    addr=$LEADER; [ $target = standby ] && addr=$STANDBY
    printf '%-24s ' "kv-get c=16 $target"
    "$TANDEM" bench kv-get --addr "$addr" --concurrency 16 --duration "$DURATION" --json
done
printf '%-24s ' "kv-get c=16 stale"
"$TANDEM" bench kv-get --addr "$STANDBY" --concurrency 16 --duration "$DURATION" --consistency stale --json
stop_nodes
"$TANDEM" bench failover --signal term --rounds 10 --json
"$TANDEM" bench failover --signal kill --rounds 10 --json
