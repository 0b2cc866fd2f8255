#!/usr/bin/env bash
# Tandem and etcd side by side on this machine, with the same workloads and the same durability.
#
# Installs Debian's etcd-server when `etcd` is missing, builds tandem once (release), starts a
# 3-node etcd and a 3-node Tandem on 127.0.0.1 (free ports, temporary data folders), and runs:
#   - kv-put and kv-get (linearizable) at concurrency 1, 16 and 64 against each, same duration and
#     value size, through `tandem bench --target tandem|etcd`;
#   - failover (SIGKILL of the leader under 16 writers) for each, through `tandem bench failover`,
#     which starts clusters of its own: each at its defaults, and etcd once more with Tandem's
#     election timing (drawn from 200-400 ms: etcd draws its own from [election-timeout,
#     2 x election-timeout)), so both are also compared at equal settings. etcd refuses an
#     election timeout under five heartbeats, so its heartbeat is 40 ms there (Tandem's: 100 ms).
# Then prints one table: system, workload, concurrency, ops/s, p50, p99, and the ratio tandem/etcd.
#
# Durability is the same on both: etcd fsyncs its write-ahead log before it acknowledges a write
# (its default; --unsafe-no-fsync is not given), and Tandem fsyncs its Raft log (its default).
#
# Usage: benches/compare-etcd.sh [duration] [failover rounds]   (defaults: 10s, 10)
#        TANDEM=/path/to/tandem benches/compare-etcd.sh ...       (measure that build instead)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10s}"
ROUNDS="${2:-10}"
VALUE_SIZE=100

if ! command -v etcd >/dev/null 2>&1; then
    echo "== installing etcd-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi

if [ -z "${TANDEM:-}" ]; then
    if ! command -v protoc >/dev/null 2>&1; then
        # The etcd target's client compiles etcd's protobuf definitions.
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
    fi
    echo "== building tandem (release, with the etcd target)"
    cargo build --release -q -p tandem --features etcd
    TANDEM="$PWD/target/release/tandem"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- etcd: three members, default settings
. benches/lib/three-etcd.sh
PIDS+=("${ETCD_PID[@]}")

# --- Tandem: three servers, default settings (fsync on commit, mutual TLS between nodes)
export TANDEM_SECRET_API=compare-api-secret-0000000
NODES=""
declare -a TANDEM_API
for i in 1 2 3; do
    TANDEM_API[$i]="127.0.0.1:$(port)"
    NODES+="$i 127.0.0.1:$(port) ${TANDEM_API[$i]}"$'\n'
done
for i in 1 2 3; do
    "$TANDEM" server --node-id "$i" --nodes "$NODES" --data-dir "$WORK/tandem$i" \
        --secret-raft compare-raft-secret-000000 --secret-api "$TANDEM_SECRET_API" \
        --log-level warn >"$WORK/tandem$i.log" 2>&1 &
    PIDS+=($!)
done

LEADER=""
for _ in $(seq 200); do
    LEADER=$(curl -sf -H "Authorization: Bearer $TANDEM_SECRET_API" "http://${TANDEM_API[1]}/v1/sys/leader" \
        | python3 -c 'import sys,json; print(json.load(sys.stdin)["leader_api_addr"] or "")' 2>/dev/null || true)
    [ -n "$LEADER" ] && break
    sleep 0.1
done
[ -n "$LEADER" ] || { echo "Tandem has no active node; logs in $WORK"; exit 1; }
# Tandem's client sends to the first address that answers: the active node goes first, as a load
# balancer that checks /health/active would do. etcd's client spreads requests over its members.
TANDEM_ADDRS="$LEADER"
for i in 1 2 3; do [ "${TANDEM_API[$i]}" != "$LEADER" ] && TANDEM_ADDRS+=",${TANDEM_API[$i]}"; done

echo "== machine"
echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(date -u '+%F %H:%M UTC')"
echo "etcd $(etcd --version | awk '/etcd Version/ {print $3}'), tandem $("$TANDEM" --version | awk '{print $2}'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$TANDEM" bench disk --data-dir "$WORK" --duration 3s

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
for workload in kv-put kv-get; do
    for c in 1 16 64; do
        for system in etcd tandem; do
            addrs=$ETCD_ADDRS; [ "$system" = tandem ] && addrs=$TANDEM_ADDRS
            echo "== $system $workload c=$c" >&2
            "$TANDEM" bench "$workload" --target "$system" --addr "$addrs" --concurrency "$c" \
                --duration "$DURATION" --value-size "$VALUE_SIZE" --json >>"$RESULTS"
        done
    done
done

# The failover benches start clusters of their own; these two stop first so they do not compete.
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()
for system in etcd tandem; do
    echo "== $system failover, $ROUNDS rounds" >&2
    "$TANDEM" bench failover --target "$system" --signal kill --rounds "$ROUNDS" --concurrency 16 --json >>"$RESULTS"
done
echo "== etcd failover with Tandem's timing, $ROUNDS rounds" >&2
"$TANDEM" bench failover --target etcd --signal kill --rounds "$ROUNDS" --concurrency 16 --json \
    --server-args "--heartbeat-interval=40 --election-timeout=200" |
    python3 -c 'import json, sys
for line in sys.stdin:
    if line.strip():
        row = json.loads(line)
        row["settings"] = "election 200-400 ms"
        print(json.dumps(row))' >>"$RESULTS"

python3 - "$RESULTS" "$DURATION" "$VALUE_SIZE" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"\nkv runs: {sys.argv[2]} each, {sys.argv[3]}-byte values, 3 nodes on 127.0.0.1; failover: SIGKILL of the leader, 16 writers\n")
print("| system | workload | concurrency | ops/s | p50 ms | p99 ms | errors | tandem/etcd |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
by = {(r["target"], r["workload"], r["concurrency"]): r for r in rows if "settings" not in r}
for r in rows:
    key = (r["workload"], r["concurrency"])
    if r["workload"] == "failover":
        ops, p50, p99, errors = "", r["failover_ms"]["p50"], r["failover_ms"]["p99"], r["failed_writes"]
    else:
        ops, p50, p99, errors = f'{r["ops_per_sec"]:,.0f}'.replace(",", " "), r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["errors"]
    ratio = ""
    etcd = by.get(("etcd",) + key)
    system = r["target"] + (f' ({r["settings"]})' if "settings" in r else "")
    if "settings" in r and r["target"] == "etcd":
        # Tandem's own row is at these settings: compare it with this one too.
        tandem = by.get(("tandem",) + key)
        if tandem:
            ratio = f'tandem: {tandem["failover_ms"]["p50"] / max(r["failover_ms"]["p50"], 1e-9):.2f} (p50 time)'
    elif r["target"] == "tandem" and etcd:
        if r["workload"] == "failover":
            # Lower is better: the ratio of the median times.
            ratio = f'{r["failover_ms"]["p50"] / max(etcd["failover_ms"]["p50"], 1e-9):.2f} (p50 time)'
        else:
            ratio = f'{r["ops_per_sec"] / max(etcd["ops_per_sec"], 1e-9):.2f}'
    print(f'| {system} | {r["workload"]} | {r["concurrency"]} | {ops} | {p50} | {p99} | {errors} | {ratio} |')
EOF
