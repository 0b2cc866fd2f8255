# Sourced by the bench scripts: starts a 3-member etcd on 127.0.0.1 with its default settings
# (fsync on commit, 100 ms heartbeat, 1 s election timeout) in $WORK, with free ports from
# `port`, both of which the caller defines, and waits until it is healthy.
# Sets ETCD_CLIENT[1..3] (client addresses), ETCD_PID[1..3] and ETCD_ADDRS (comma-separated).
ETCD_CLUSTER=""
declare -a ETCD_PEER ETCD_CLIENT ETCD_PID
for i in 1 2 3; do
    ETCD_PEER[$i]="127.0.0.1:$(port)"
    ETCD_CLIENT[$i]="127.0.0.1:$(port)"
    ETCD_CLUSTER+="${ETCD_CLUSTER:+,}e$i=http://${ETCD_PEER[$i]}"
done
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$WORK/etcd$i" \
        --listen-peer-urls "http://${ETCD_PEER[$i]}" --initial-advertise-peer-urls "http://${ETCD_PEER[$i]}" \
        --listen-client-urls "http://${ETCD_CLIENT[$i]}" --advertise-client-urls "http://${ETCD_CLIENT[$i]}" \
        --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token compare \
        --log-level warn >"$WORK/etcd$i.log" 2>&1 &
    ETCD_PID[$i]=$!
done
ETCD_ADDRS="${ETCD_CLIENT[1]},${ETCD_CLIENT[2]},${ETCD_CLIENT[3]}"
ready=""
for _ in $(seq 200); do
    if curl -sf "http://${ETCD_CLIENT[1]}/health" | grep -q '"health":"true"'; then ready=1; break; fi
    sleep 0.1
done
[ -n "$ready" ] || { echo "etcd did not become healthy; logs in $WORK"; cat "$WORK"/etcd*.log; exit 1; }
