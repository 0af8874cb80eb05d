#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on their usual loopback ports; starts them when they
# are installed but stopped. Fails loudly (the tests need both: they never skip).
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
    echo "ensure-services: starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
fi
if ! redis_up; then
    echo "ensure-services: starting Redis" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 50); do redis_up && break; sleep 0.2; done
fi
pg_up || { echo "ensure-services: PostgreSQL is not reachable at 127.0.0.1:5432" >&2; exit 1; }
redis_up || { echo "ensure-services: Redis is not reachable at 127.0.0.1:6379" >&2; exit 1; }
