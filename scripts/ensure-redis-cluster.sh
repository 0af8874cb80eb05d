#!/usr/bin/env bash
# Makes sure a Redis Cluster of three masters and three replicas answers on loopback ports
# 7000-7005 (the scale-out tests use it); starts the nodes that are down and creates the cluster
# once. Idempotent and quick when the cluster is up, so tests call it too: after a test kills a
# master, calling this again brings the node back (it rejoins as a replica of its successor).
#
# Settings chosen for tests: node timeout 2 s (a dead master is failed over within seconds),
# no persistence (a restarted node resyncs from its master), partial coverage allowed (slots
# of a dead master fail; the others keep answering), and a replica always takes over whatever
# the age of its data (the gateway detects a promoted replica and rebuilds from the database).
set -euo pipefail

PORTS=(7000 7001 7002 7003 7004 7005)
BASE=${SNAPGATE_REDIS_CLUSTER_DIR:-/var/lib/snapgate-redis-cluster}
LOCK=/tmp/snapgate-redis-cluster.lock

log() { echo "ensure-redis-cluster: $*" >&2; }
node_up() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
# Every node sees the cluster ok, all six connected and none failed (a node just restarted
# believes its old role until gossip corrects it; clients must not meet that view).
cluster_ok() {
    local port
    for port in "${PORTS[@]}"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' ||
            return 1
        [[ $(redis-cli -h 127.0.0.1 -p "$port" cluster nodes 2>/dev/null |
            grep -v fail | grep -c connected) -eq 6 ]] || return 1
    done
}

# Two test processes calling at once must not both create the cluster.
exec 9>"$LOCK"
flock 9

for port in "${PORTS[@]}"; do
    node_up "$port" && continue
    dir="$BASE/$port"
    mkdir -p "$dir"
    log "starting node $port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir" \
        --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --cluster-require-full-coverage no --cluster-replica-validity-factor 0 \
        --save "" --appendonly no 9>&- # the daemon must not inherit (and hold) the lock
done
for port in "${PORTS[@]}"; do
    for _ in $(seq 100); do node_up "$port" && break; sleep 0.1; done
    node_up "$port" || { log "node $port does not answer (see $BASE/$port/redis.log)"; exit 1; }
done

# Slots never assigned: a fresh set of nodes. Create the cluster.
if redis-cli -h 127.0.0.1 -p 7000 cluster info | grep -q '^cluster_slots_assigned:0'; then
    log "creating the cluster"
    nodes=()
    for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
fi

# Wait until every node is known and connected and all slots are served (a node just restarted
# takes a moment to rejoin; a fresh cluster a moment to agree).
for _ in $(seq 300); do cluster_ok && break; sleep 0.1; done
cluster_ok || {
    log "the cluster is not healthy:"
    redis-cli -h 127.0.0.1 -p 7000 cluster nodes >&2 || true
    exit 1
}
