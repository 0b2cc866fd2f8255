# Sourced by the bench scripts: builds the release binary (unless TANDEM names one) and starts a
# 3-node cluster on 127.0.0.1 with free ports in a temporary folder; on exit the servers are
# stopped and the folder removed.
# Sets TANDEM (the binary), WORK (the folder), API[1..3] (API addresses), NODES (the node
# list), PID[1..3] (the servers' process ids), LEADER (the active node's API address), defines
# start_node N (starts node N again, with the same folder and ports) and exports TANDEM_SECRET_API.
# TANDEM_FEATURES, when set, names cargo features of the build (`etcd`).
if [ -z "${TANDEM:-}" ]; then
    cargo build --release -p tandem ${TANDEM_FEATURES:+--features "$TANDEM_FEATURES"} >/dev/null
    TANDEM="$PWD/target/release/tandem"
fi
WORK="$(mktemp -d)"
declare -a PID
stop_nodes() {
    for pid in "${PID[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PID[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap stop_nodes EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NODES=""
declare -a API
for i in 1 2 3; do
    r=$(port); a=$(port); API[$i]="127.0.0.1:$a"
    NODES+="$i 127.0.0.1:$r 127.0.0.1:$a"$'\n'
done
export TANDEM_SECRET_API=bench-api-secret-0000000
start_node() {
    "$TANDEM" server --node-id "$1" --nodes "$NODES" --data-dir "$WORK/n$1" \
        --secret-raft bench-raft-secret-000000 --secret-api "$TANDEM_SECRET_API" \
        --log-level warn >>"$WORK/n$1.log" 2>&1 &
    PID[$1]=$!
}
for i in 1 2 3; do start_node "$i"; done
LEADER=""
for _ in $(seq 100); do
    LEADER=$(curl -sf -H "Authorization: Bearer $TANDEM_SECRET_API" "http://${API[1]}/v1/sys/leader" \
        | python3 -c 'import sys,json; print(json.load(sys.stdin)["leader_api_addr"] or "")' 2>/dev/null || true)
    [ -n "$LEADER" ] && break
    sleep 0.1
done
[ -n "$LEADER" ] || { echo "no leader"; exit 1; }
