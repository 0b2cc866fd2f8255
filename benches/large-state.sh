#!/usr/bin/env bash
# A large state on a 3-node cluster, with etcd beside it: how much memory each server holds as
# the state grows, while a snapshot is built, and while a wiped node is sent one and installs it;
# how long that node takes to catch up, and a restarted node to serve again.
#
# Starts a 3-node Tandem (release build, defaults) and a 3-member etcd (defaults) on 127.0.0.1,
# then for each key count: fills both to that many distinct keys of 100 bytes with
# `tandem bench fill` (etcd first, then Tandem, never both at once) and records each process's
# VmRSS, its peak during the fill (sampled every 50 ms) and the data folders' size. After the last
# count, on Tandem: builds a snapshot on the active node, wipes a standby's data folder and starts
# it again (it is sent the snapshot), then restarts the other standby; each step with the peak
# memory of every server while it ran, and its time.
#
# Usage: benches/large-state.sh [key counts...]   (default: 200000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(200000 1000000)
CONCURRENCY=64
TANDEM_FEATURES=etcd
. benches/lib/three-nodes.sh
. benches/lib/three-etcd.sh
SERVERS=("$WORK/n1" "$WORK/n2" "$WORK/n3")
MEMBERS=("$WORK/etcd1" "$WORK/etcd2" "$WORK/etcd3")
AUTH=(-H "Authorization: Bearer $TANDEM_SECRET_API")

now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 2))"; }
memory() { python3 benches/lib/peak-rss.py --now "$@"; }

# Runs the command after `--` while sampling the peak memory of the processes named before it.
peak_during() {
    local dirs=()
    while [ "$1" != "--" ]; do dirs+=("$1"); shift; done
    shift
    rm -f "$WORK/stop"
    python3 benches/lib/peak-rss.py "$WORK/stop" "${dirs[@]}" >"$WORK/peak" &
    local sampler=$!
    local started
    started=$(now)
    "$@"
    echo "  took $(since "$started") s"
    touch "$WORK/stop"
    wait "$sampler"
    echo "  peak MiB: $(cat "$WORK/peak")"
}

# Waits until node $1 serves a stale read of key $2 and holds a snapshot.
caught_up() {
    for _ in $(seq 6000); do
        if curl -sf "${AUTH[@]}" "http://${API[$1]}/v1/kv/$2?consistency=stale" >/dev/null &&
            curl -sf "${AUTH[@]}" "http://${API[$1]}/v1/cluster" |
            python3 -c 'import sys,json; sys.exit(0 if (json.load(sys.stdin).get("snapshot_index") or 0) > 0 else 1)'; then
            return 0
        fi
        sleep 0.05
    done
    echo "node $1 did not catch up"
    exit 1
}

serving() {
    for _ in $(seq 6000); do
        curl -sf "${AUTH[@]}" "http://${API[$1]}/v1/kv/$2?consistency=stale" >/dev/null && return 0
        sleep 0.05
    done
    echo "node $1 did not serve again"
    exit 1
}

echo "== machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(date -u '+%F %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "etcd $(etcd --version | awk '/etcd Version/ {print $3}'), tandem $("$TANDEM" --version | awk '{print $2}')"

TANDEM_ADDRS="$LEADER"
for i in 1 2 3; do [ "${API[$i]}" != "$LEADER" ] && TANDEM_ADDRS+=",${API[$i]}"; done
filled=0
last_key=""
for count in "${COUNTS[@]}"; do
    keys=$((count - filled))
    echo "== fill to $count keys ($keys more, 100 bytes each, concurrency $CONCURRENCY)"
    for system in etcd tandem; do
        addrs=$ETCD_ADDRS; dirs=("${MEMBERS[@]}")
        [ $system = tandem ] && addrs=$TANDEM_ADDRS && dirs=("${SERVERS[@]}")
        echo "- $system"
        peak_during "${dirs[@]}" -- "$TANDEM" bench fill --target $system --addr "$addrs" \
            --keys "$keys" --prefix "k$count/" --concurrency "$CONCURRENCY" --json
    done
    filled=$count
    last_key="k$count/$((keys - 1))"
    echo "  memory MiB now (rss, hwm since start): $(memory "${SERVERS[@]}" "${MEMBERS[@]}")"
    echo "  data folders MiB: $(du -sm "${SERVERS[@]}" "${MEMBERS[@]}" | awk '{printf "%s=%s ", $2, $1}' | sed "s|$WORK/||g")"
done

for i in 1 2 3; do [ "${API[$i]}" = "$LEADER" ] && ACTIVE=$i; done
STANDBYS=()
for i in 1 2 3; do [ "$i" != "$ACTIVE" ] && STANDBYS+=("$i"); done
WIPED=${STANDBYS[0]}
RESTARTED=${STANDBYS[1]}

echo "== snapshot built on the active node (n$ACTIVE)"
peak_during "${SERVERS[@]}" -- curl -sf "${AUTH[@]}" -X POST "http://$LEADER/v1/cluster/snapshot"
echo
echo "  snapshot MiB: $(du -sm "$WORK/n$ACTIVE/snapshot/current.db" | cut -f1)"

echo "== n$WIPED wiped and started again: sent the snapshot, installs it, catches up"
kill -9 "${PID[$WIPED]}"
wait "${PID[$WIPED]}" 2>/dev/null || true
rm -rf "$WORK/n$WIPED"
start_node "$WIPED"
peak_during "${SERVERS[@]}" -- caught_up "$WIPED" "$last_key"
echo "  memory MiB now (rss, hwm since start): $(memory "${SERVERS[@]}")"

echo "== n$RESTARTED stopped (SIGTERM) and started again: time until it serves"
kill "${PID[$RESTARTED]}"
wait "${PID[$RESTARTED]}" 2>/dev/null || true
start_node "$RESTARTED"
peak_during "${SERVERS[@]}" -- serving "$RESTARTED" "$last_key"
echo "  memory MiB now (rss, hwm since start): $(memory "${SERVERS[@]}")"
