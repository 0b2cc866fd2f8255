#!/usr/bin/env bash
# Forwarding overhead and graceful / crash failover, measured on this machine.
# Starts a 3-node cluster of the release binary on 127.0.0.1, then:
#   - kv-put and kv-get sent straight to the active node vs. to a standby (which forwards);
#   - tandem bench failover with SIGTERM (graceful step-down) and SIGKILL (crash).
# Usage: benches/active-standby.sh [duration]   (default 10s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10s}"
cargo build --release -p tandem >/dev/null
TANDEM="$PWD/target/release/tandem"
WORK="$(mktemp -d)"
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NODES=""
declare -a API
for i in 1 2 3; do
    r=$(port); a=$(port); API[$i]="127.0.0.1:$a"
    NODES+="$i 127.0.0.1:$r 127.0.0.1:$a"$'\n'
done
export TANDEM_SECRET_API=bench-api-secret-0000000
for i in 1 2 3; do
    "$TANDEM" server --node-id "$i" --nodes "$NODES" --data-dir "$WORK/n$i" \
        --secret-raft bench-raft-secret-000000 --secret-api "$TANDEM_SECRET_API" \
        --log-level warn >"$WORK/n$i.log" 2>&1 &
done
for _ in $(seq 100); do
    LEADER=$(curl -sf -H "Authorization: Bearer $TANDEM_SECRET_API" "http://${API[1]}/v1/sys/leader" \
        | python3 -c 'import sys,json; print(json.load(sys.stdin)["leader_api_addr"] or "")' 2>/dev/null || true)
    [ -n "$LEADER" ] && break
    sleep 0.1
done
[ -n "$LEADER" ] || { echo "no leader"; exit 1; }
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
pkill -f "$WORK" || true
"$TANDEM" bench failover --signal term --rounds 10 --json
"$TANDEM" bench failover --signal kill --rounds 10 --json
