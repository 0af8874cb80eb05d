#!/usr/bin/env bash
# Scale-out throughput (issue 10 point 6). Results and how to read them: docs/BENCHMARKS.md,
# section "Throughput: N gateways behind HAProxy".
#
#   benches/api/throughput.sh                                  # 1, 2, 3 gateways × 1, 16 tenants
#   GATEWAY_COUNTS=3 TENANT_COUNTS="1 16" DURATION=10s benches/api/throughput.sh
#
# For each gateway count N and tenant count T: a fresh PostgreSQL database, a fresh key prefix
# on the loopback Redis Cluster (scripts/ensure-redis-cluster.sh, ports 7000-7005,
# `[redis] cluster = true`), N release gateways on it (each with its own in-process copy of
# one generated libvirt test-driver node of DOMAINS running domains, spread over T tenants),
# and HAProxy in front of them from deploy/haproxy/snapgate.cfg.template (health checks on
# /readyz, round-robin per request). Then wrk drives a closed loop through HAProxy
# (THREADS threads, CONNECTIONS connections): reads (GET of one state per tenant, cycling),
# then saves (POST …/states, round-robin over the instances, each with its tenant's token,
# large finite quota limits so every save goes through the Redis reservation scripts).
#
# During each measured window it records the CPU time of every process involved (gateways,
# PostgreSQL backends of the bench database and PostgreSQL as a whole, the six Redis nodes,
# HAProxy, wrk, the samplers) and of the whole machine, PostgreSQL commits and WAL syncs,
# PostgreSQL wait events (pg_stat_activity sampled every 100 ms), Redis commands per node
# (INFO commandstats) and slow-log entries. After the saves it waits until every accepted
# save has ended, and counts the saves completed per second including that drain.
#
# Any answer other than 202 (save) or 200 (read), or a socket error, fails the run; so does a
# save that did not succeed. It holds the Redis Cluster test lock for the whole run (a test
# that kills a master must not land mid-measurement) and removes everything it started (gateways,
# HAProxy, database, Redis keys, temp dir) on exit, also on failure or Ctrl-C.
#
# Knobs (environment): GATEWAY_COUNTS="1 2 3" TENANT_COUNTS="1 16" DOMAINS=10000 DURATION=15s
#   WARMUP=3s THREADS=2 CONNECTIONS=12 PG_URL=postgres://postgres@127.0.0.1:5432
#   SKIP_BUILD=1 (reuse the binary; GATEWAY_BIN=path picks another) KEEP=1 (keep the temp dir)
#   PERF=1 (perf record gateway 1 during each measured window; top symbols in the output)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

GATEWAY_COUNTS=${GATEWAY_COUNTS:-1 2 3}
TENANT_COUNTS=${TENANT_COUNTS:-1 16}
DOMAINS=${DOMAINS:-10000}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-12}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
REDIS_PORTS=(7000 7001 7002 7003 7004 7005)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${GATEWAY_BIN:-$CARGO_TARGET_DIR/release/snapgate}
# Large but finite: every save runs the Redis reservation script and its limit checks.
BIG=1000000000
BIG_BYTES=1000000000000000
CLK_TCK=$(getconf CLK_TCK)

for tool in wrk curl jq awk psql redis-cli haproxy socat; do
  command -v "$tool" >/dev/null || { echo "throughput.sh: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/snapgate-throughput.XXXXXX")
RESULTS=$WORK/results.tsv
GATEWAY_PIDS=()
HAPROXY_PID=""
PG_DB=""
REDIS_PREFIX=""

log() { printf '[throughput %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

stop_all() {
  if [[ -n $HAPROXY_PID ]]; then
    kill -TERM "$HAPROXY_PID" 2>/dev/null || true
    wait "$HAPROXY_PID" 2>/dev/null || true
    HAPROXY_PID=""
  fi
  local pid
  for pid in "${GATEWAY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${GATEWAY_PIDS[@]}"; do
    # The gateway waits up to snapshots.shutdown_grace_secs for running operations.
    for _ in $(seq 900); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  GATEWAY_PIDS=()
}

# The keys of this run's prefix, deleted on each master that holds them (the scan of a master
# returns its own keys only; one UNLINK per key, so no command spans two slots).
drop_redis_keys() {
  local port
  for port in $(redis_masters); do
    redis-cli -p "$port" --scan --pattern "$REDIS_PREFIX:*" | awk '{ print "UNLINK " $0 }' |
      redis-cli -p "$port" >/dev/null || log "could not delete Redis keys $REDIS_PREFIX:* on $port"
  done
}

drop_backing_stores() {
  if [[ -n $PG_DB ]]; then
    psql "$PG_URL/postgres" -qXc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null ||
      log "could not drop PostgreSQL database $PG_DB: drop it by hand"
    PG_DB=""
  fi
  if [[ -n $REDIS_PREFIX ]]; then
    drop_redis_keys
    REDIS_PREFIX=""
  fi
}

cleanup() {
  stop_all
  drop_backing_stores
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_masters() {
  redis-cli -p 7000 cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2] }'
}

redis_pid() { redis-cli -p "$1" info server | awk -F: '/^process_id:/ { print $2 + 0 }'; }

# CPU ticks (user + system) of a process, 0 when it is gone.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Busy ticks of the whole machine (every core).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

instance_uuid() { printf 'b0000000-0000-4000-8000-%012d' "$1"; }

call() {
  local expect=$1 token=$2 method=$3 path=$4 body=${5:-}
  local out status
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} -w '\n%{http_code}' "$URL$path")
  status=${out##*$'\n'}
  [[ $status == "$expect" ]] || die "$method $path: expected $expect, got $status: ${out%$'\n'*}"
  printf '%s' "${out%$'\n'*}"
}

# start_setup N T DIR: database, Redis prefix, N gateways, HAProxy. Sets URL, TOKENS,
# ADMIN_URLS.
start_setup() {
  local n=$1 t=$2 dir=$3 k
  PG_DB="snapgate_throughput_$RANDOM$RANDOM"
  psql "$PG_URL/postgres" -qXc "CREATE DATABASE \"$PG_DB\"" >/dev/null ||
    die "PostgreSQL at $PG_URL is required"
  REDIS_PREFIX="sgtput$RANDOM$RANDOM"
  TOKENS=()
  : >"$dir/tokens.toml"
  for ((k = 0; k < t; k++)); do
    local token tenant=demo
    ((t > 1)) && tenant=$(printf 'bench-t%02d' "$k")
    token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    TOKENS+=("$token")
    printf '[tokens."%s"]\ntenant = "%s"\nrole = "member"\n' "$token" "$tenant" >>"$dir/tokens.toml"
  done
  "$HERE/gen-node.sh" "$DOMAINS" 0 "$t" >"$dir/node.xml"
  local seeds="" port
  for port in "${REDIS_PORTS[@]}"; do seeds+="${seeds:+,}redis://127.0.0.1:$port"; done
  ADMIN_URLS=()
  local servers=""
  for ((k = 1; k <= n; k++)); do
    local gw=$dir/gw$k listen admin
    mkdir -p "$gw/data"
    listen=$(free_port)
    admin=$(free_port)
    ADMIN_URLS+=("http://127.0.0.1:$admin")
    servers+="    server gw$k 127.0.0.1:$listen check"$'\n'
    {
      printf 'listen = "127.0.0.1:%s"\ndata_dir = "%s/data"\n' "$listen" "$gw"
      printf '[database]\nurl = "%s/%s"\n' "$PG_URL" "$PG_DB"
      printf '[redis]\nurl = "%s"\ncluster = true\nkey_prefix = "%s"\n' "$seeds" "$REDIS_PREFIX"
      printf '[auth]\ntoken_file = "%s/tokens.toml"\n' "$dir"
      printf '[[hosts]]\nname = "bench"\nuri = "test://%s/node.xml"\n' "$dir"
      # The test driver parses the whole node file when it connects: thousands of domains on
      # a loaded machine take longer than the default 5 s, which would open the breaker.
      printf '[compute]\nconnect_timeout_secs = 120\ncall_timeout_secs = 30\n'
      printf '[quota.defaults]\nstates = %s\nstate_bytes = %s\nconcurrent_operations = %s\nsaves_per_hour = %s\n' \
        "$BIG" "$BIG_BYTES" "$BIG" "$BIG"
      printf '[log]\nlevel = "info"\n'
      printf '[api]\nadmin_listen = "127.0.0.1:%s"\n' "$admin"
    } >"$gw/snapgate.toml"
    "$BIN" serve --config "$gw/snapgate.toml" >"$gw/gateway.log" 2>&1 &
    GATEWAY_PIDS+=($!)
    local ready=0
    for _ in $(seq 600); do
      curl -sf "http://127.0.0.1:$listen/readyz" >/dev/null 2>&1 && { ready=1; break; }
      kill -0 "${GATEWAY_PIDS[-1]}" 2>/dev/null || { cat "$gw/gateway.log" >&2; die "gateway $k exited at start"; }
      sleep 0.1
    done
    ((ready)) || { cat "$gw/gateway.log" >&2; die "gateway $k was not ready in 60 s"; }
  done
  # Every gateway has read its host's inventory (placement index) before the load starts.
  for ((k = 0; k < n; k++)); do
    for _ in $(seq 600); do
      curl -sf "${ADMIN_URLS[k]}/metrics" | grep -q '^snapgate_placement_inventories_total{' && break
      sleep 0.2
    done
  done
  local hport
  hport=$(free_port)
  URL="http://127.0.0.1:$hport"
  HAPROXY_SOCKET=$dir/haproxy.sock
  # As tests/src/haproxy.rs renders it: the {{SERVERS}} line becomes one line per gateway.
  awk -v bind="127.0.0.1:$hport" -v sock="$HAPROXY_SOCKET" -v servers="${servers%$'\n'}" '
      $0 == "{{SERVERS}}" { print servers; next }
      { gsub(/\{\{BIND\}\}/, bind); gsub(/\{\{STATS_SOCKET\}\}/, sock); print }' \
    "$ROOT/deploy/haproxy/snapgate.cfg.template" >"$dir/haproxy.cfg"
  haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  local up=0
  for _ in $(seq 200); do
    up=$(echo "show stat" | socat - "UNIX-CONNECT:$HAPROXY_SOCKET" 2>/dev/null |
      awk -F, '$1 == "gateways" && $2 ~ /^gw/ && $18 == "UP"' | wc -l || true)
    ((up == n)) && break
    sleep 0.1
  done
  ((up == n)) || { cat "$dir/haproxy.log" >&2; die "HAProxy holds $up of $n gateways UP"; }
}

# One saved state per tenant (on instance k, owned by tenant k); sets READ_PATHS.
prepare_states() {
  local t=$1 k accepted op status
  READ_PATHS=""
  for ((k = 0; k < t; k++)); do
    accepted=$(call 202 "${TOKENS[k]}" POST "/v1/instances/$(instance_uuid "$k")/states" '{"name":"read-me"}')
    op=$(jq -r .operation <<<"$accepted")
    status=$(call 200 "${TOKENS[k]}" GET "/v1/operations/$op/wait?timeout=60" | jq -r .status)
    [[ $status == succeeded ]] || die "preparing the read state of tenant $k: operation $op ended $status"
    READ_PATHS+="${READ_PATHS:+ }/v1/instances/$(instance_uuid "$k")/states/$(jq -r .uuid <<<"$accepted")"
  done
  call 200 "${TOKENS[0]}" GET "${READ_PATHS%% *}" >/dev/null
}

pg() { psql "$PG_URL/$PG_DB" -qXAtc "$1"; }

# PostgreSQL backends of the bench database and every PostgreSQL process.
pg_bench_pids() {
  pg "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND application_name <> 'throughput-sampler'"
}
pg_all_pids() { pgrep -u postgres -d ' ' postgres || true; }

# Per node and command: "port command calls usec", without the monitoring's own commands.
redis_commands() {
  local port
  for port in "${REDIS_PORTS[@]}"; do
    redis-cli -p "$port" info commandstats | tr -d '\r' |
      sed -n "s/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\).*/$port \1 \2 \3/p" |
      grep -Ev ' (info|slowlog\|[a-z]*|ping|replconf|cluster\|[a-z]*|command\|[a-z]*|client\|[a-z]*|config\|[a-z]*) '
  done
}

# The id of a node's newest slow-log entry, -1 when none (ids only grow).
slowlog_newest() {
  local id
  id=$(redis-cli -p "$1" slowlog get 1 | head -1)
  [[ $id =~ ^[0-9]+$ ]] && echo "$id" || echo -1
}

# measure N T CALL SCRIPT DURATION [ENV…]: one measured wrk run with every counter around it;
# appends a row to $RESULTS.
measure() {
  local n=$1 t=$2 name=$3 script=$4 duration=$5
  shift 5
  local tag=$WORK/g$n-t$t-$name
  local redis_pids=() port pid
  for port in "${REDIS_PORTS[@]}"; do redis_pids+=("$(redis_pid "$port")"); done
  local pg_pids pg_all
  pg_pids=$(pg_bench_pids | tr '\n' ' ')
  pg_all=$(pg_all_pids)
  local commits0 wal0 machine0 start_epoch
  commits0=$(pg "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
  wal0=$(pg "SELECT wal_sync FROM pg_stat_wal")
  redis_commands >"$tag.redis0"
  declare -A t0=()
  for pid in "${GATEWAY_PIDS[@]}" "$HAPROXY_PID" "${redis_pids[@]}" $pg_pids $pg_all; do t0[$pid]=$(ticks "$pid"); done
  local slow0=()
  for port in "${REDIS_PORTS[@]}"; do slow0+=("$(slowlog_newest "$port")"); done
  machine0=$(machine_ticks)
  start_epoch=$EPOCHREALTIME
  # Wait events of the bench database's backends, sampled every 100 ms by one session.
  # A heavyweight-lock wait names what it waits for (e.g. `Lock:object/pg_database`: the lock
  # every transaction that sent a NOTIFY takes at commit, one at a time across the server).
  printf "SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, 'running') || coalesce('/' || (SELECT coalesce(l.classid::regclass::text, l.relation::regclass::text, l.locktype) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1), '') FROM pg_stat_activity a WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() \\\\watch 0.1\n" |
    PGAPPNAME=throughput-sampler psql "$PG_URL/$PG_DB" -qXAt >"$tag.waits" 2>/dev/null &
  local sampler=$!
  local perf_pid=""
  if [[ ${PERF:-0} == 1 ]]; then
    perf record -F 499 -g -p "${GATEWAY_PIDS[0]}" -o "$tag.perf.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  env BENCH_LUA_DIR="$HERE/lua" BENCH_TOKEN="${TOKENS[0]}" BENCH_TOKENS="${TOKENS[*]}" \
    BENCH_THREADS="$THREADS" BENCH_NAME="$name" "$@" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --latency -s "$HERE/lua/$script" "$URL" >"$tag.wrk.txt" 2>&1 &
  local wrk_pid=$!
  # wrk's own CPU: read just before it exits (its children are none).
  local wrk_ticks=0 sampler_ticks=0
  while kill -0 "$wrk_pid" 2>/dev/null; do
    wrk_ticks=$(ticks "$wrk_pid")
    sleep 0.2
  done
  wait "$wrk_pid" || { cat "$tag.wrk.txt" >&2; die "wrk $name failed"; }
  local machine1 seconds
  machine1=$(machine_ticks)
  WRK_END=$EPOCHREALTIME
  seconds=$(awk -v a="$start_epoch" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  sampler_ticks=$(ticks "$sampler")
  kill -INT "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf report -i "$tag.perf.data" --stdio --no-children -g none --sort dso,sym 2>/dev/null |
      grep -v '^#' | grep '%' | head -40 >"$tag.perf.txt" || true
    log "g$n t$t $name: hottest symbols of gateway 1:"
    head -15 "$tag.perf.txt" >&2
  fi
  # Backends that appeared during the window count from zero.
  local pg_pids_end
  pg_pids_end=$(pg_bench_pids | tr '\n' ' ')
  local gw_ticks=0 pg_ticks=0 pgall_ticks=0 redis_ticks=0 haproxy_ticks
  for pid in "${GATEWAY_PIDS[@]}"; do gw_ticks=$((gw_ticks + $(ticks "$pid") - ${t0[$pid]})); done
  haproxy_ticks=$(($(ticks "$HAPROXY_PID") - ${t0[$HAPROXY_PID]}))
  for pid in "${redis_pids[@]}"; do redis_ticks=$((redis_ticks + $(ticks "$pid") - ${t0[$pid]})); done
  for pid in $(printf '%s\n' $pg_pids $pg_pids_end | sort -u); do
    pg_ticks=$((pg_ticks + $(ticks "$pid") - ${t0[$pid]:-0}))
  done
  for pid in $(printf '%s\n' $pg_all $(pg_all_pids) | sort -u); do
    pgall_ticks=$((pgall_ticks + $(ticks "$pid") - ${t0[$pid]:-0}))
  done
  local commits1 wal1
  commits1=$(pg "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
  wal1=$(pg "SELECT wal_sync FROM pg_stat_wal")
  redis_commands >"$tag.redis1"

  local result
  result=$(grep '^RESULT ' "$tag.wrk.txt") || { cat "$tag.wrk.txt" >&2; die "wrk $name printed no RESULT"; }
  grep '^SAMPLE ' "$tag.wrk.txt" >&2 || true
  [[ $(sed -E 's/.* unexpected=([0-9]+).*/\1/' <<<"$result") == 0 ]] || die "g$n t$t $name: unexpected statuses (SAMPLE above)"
  [[ $(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$result") == 0 ]] || die "g$n t$t $name: socket errors"
  if [[ $script == save.lua ]]; then
    SAVES_ACCEPTED=$((SAVES_ACCEPTED + $(sed -E 's/.* requests=([0-9]+).*/\1/' <<<"$result")))
  fi
  [[ $name == warmup-* ]] && return 0

  # CPU in cores (ticks / CLK_TCK / seconds), per group.
  cores() { awk -v t="$1" -v hz="$CLK_TCK" -v s="$seconds" 'BEGIN { printf "%.2f", t / hz / s }'; }
  local ours machine others
  ours=$((gw_ticks + pgall_ticks + redis_ticks + haproxy_ticks + wrk_ticks + sampler_ticks))
  machine=$((machine1 - machine0))
  others=$((machine - ours))
  ((others < 0)) && others=0
  # Redis: calls per node (masters carry the scripts), the busiest node's share, and the
  # commands that took the most time.
  local redis_summary masters
  masters=" $(redis_masters | tr '\n' ' ')"
  redis_summary=$(awk -v s="$seconds" -v masters="$masters" '
      FNR == NR { c0[$1 " " $2] = $3; u0[$1 " " $2] = $4; next }
      { k = $1 " " $2; dc = $3 - c0[k]; du = $4 - u0[k]; calls[$1] += dc; usec[$1] += du; total += dc
        cmd[$2] += dc; cmdu[$2] += du }
      END {
        max = 0; for (p in calls) if (calls[p] > max) { max = calls[p]; maxp = p }
        line = ""
        for (p in calls) if (calls[p] > 0)
          line = line sprintf("%s%s %.0f/s, ", p, index(masters, " " p " ") ? " (master)" : "", calls[p] / s)
        top = ""
        for (c in cmd) if (cmd[c] > 0) top = top sprintf("%s %.0f/s %.0fus; ", c, cmd[c] / s, cmdu[c] / cmd[c])
        printf "%s\t%.0f\t%s\t%s", line, (total > 0 ? 100 * max / total : 0), maxp, top
      }' "$tag.redis0" "$tag.redis1")
  local slowlog=0 i=0
  for port in "${REDIS_PORTS[@]}"; do
    slowlog=$((slowlog + $(slowlog_newest "$port") - ${slow0[i]}))
    i=$((i + 1))
  done
  local waits
  waits=$(grep ':' "$tag.waits" | sort | uniq -c | sort -rn | awk -v total="$(grep -c ':' "$tag.waits")" '
      NR <= 5 { printf "%s %.0f%%; ", $2, (total > 0 ? 100 * $1 / total : 0) }')
  MEASURED_SECONDS=$seconds
  log "g$n t$t $result"
  # gateways tenants call p50 p99 rps requests | cpu: gateways pg_bench pg_all redis haproxy
  # wrk samplers machine others | commits/s walsync/s | redis per node | busiest% | slowlog | waits
  awk -v n="$n" -v t="$t" -v s="$seconds" -v load1="$(cut -d' ' -f1 /proc/loadavg)" \
    -v cpu="$(cores "$gw_ticks")	$(cores "$pg_ticks")	$(cores "$pgall_ticks")	$(cores "$redis_ticks")	$(cores "$haproxy_ticks")	$(cores "$wrk_ticks")	$(cores "$sampler_ticks")	$(cores "$machine")	$(cores "$others")" \
    -v commits="$(awk -v a="$commits0" -v b="$commits1" -v s="$seconds" 'BEGIN { printf "%.0f", (b - a) / s }')" \
    -v walsync="$(awk -v a="$wal0" -v b="$wal1" -v s="$seconds" 'BEGIN { printf "%.0f", (b - a) / s }')" \
    -v redis="$redis_summary" -v slow="$slowlog" -v waits="$waits" '{
      for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print n "\t" t "\t" $2 "\t" v["p50_us"] "\t" v["p99_us"] "\t" v["rps"] "\t" v["requests"] "\t" load1 "\t" cpu "\t" commits "\t" walsync "\t" redis "\t" slow "\t" waits
    }' <<<"$result" >>"$RESULTS"
}

# save_count RESULT: saves that ended with RESULT, summed over the gateways' /metrics.
save_count() {
  local sum=0 url
  for url in "${ADMIN_URLS[@]}"; do
    sum=$((sum + $(curl -sf "$url/metrics" |
      awk -v r="$1" '/^snapgate_operations_total\{/ && /kind="save"/ && $0 ~ "result=\"" r "\"" { n += $NF } END { print n + 0 }')))
  done
  echo "$sum"
}

# drain_saves N T AT_LEAST WINDOW_SECONDS: waits until at least AT_LEAST saves ended and none
# is still ending; fails if any did not succeed; records the saves completed per second over
# the window plus the drain.
drain_saves() {
  local n=$1 t=$2 at_least=$3 window=$4 ended=-1 previous=-2 started=$SECONDS
  local measured_before=$MEASURE_BASE last_change=$EPOCHREALTIME
  while ((ended < at_least || ended != previous)); do
    ((SECONDS - started < 300)) || die "only $ended of at least $at_least saves ended in 5 min"
    previous=$ended
    sleep 0.5
    ended=$(($(save_count succeeded) + $(save_count failed)))
    ((ended != previous)) && last_change=$EPOCHREALTIME
  done
  # From the end of the load to the last save seen ending (0.5 s polling).
  local drain failed
  drain=$(awk -v a="$WRK_END" -v b="$last_change" 'BEGIN { d = b - a; printf "%.1f", (d < 0 ? 0 : d) }')
  failed=$(save_count failed)
  ((failed == 0)) || die "g$n t$t: $failed accepted saves failed"
  local done_in_window=$((ended - measured_before))
  log "g$n t$t: $ended saves ended, $drain s after the load stopped"
  printf '%s\t%s\t%s\t%s\n' "$n" "$t" "$drain" \
    "$(awk -v d="$done_in_window" -v w="$window" -v x="$drain" 'BEGIN { printf "%.0f", d / (w + x) }')" >>"$WORK/drain.tsv"
}

run_setup() {
  local n=$1 t=$2 dir=$WORK/g$n-t$t
  mkdir -p "$dir"
  log "$n gateway(s), $t tenant(s): starting ($DOMAINS domains)"
  start_setup "$n" "$t" "$dir"
  SAVES_ACCEPTED=0
  prepare_states "$t"
  log "$n gateway(s), $t tenant(s): measuring ($THREADS threads, $CONNECTIONS connections, $DURATION each)"
  measure "$n" "$t" warmup-read read.lua "$WARMUP" BENCH_PATHS="$READ_PATHS"
  measure "$n" "$t" read read.lua "$DURATION" BENCH_PATHS="$READ_PATHS"
  # Warm-up and measurement use disjoint halves of the instances (instance 0 … T-1 hold the
  # read states): an instance comes back only after a half's worth of other saves.
  local half=$(((DOMAINS - t) / 2))
  measure "$n" "$t" warmup-save save.lua "$WARMUP" BENCH_FIRST="$t" BENCH_COUNT=$half BENCH_RUN="w$RANDOM"
  # Let the warm-up's saves end, so the drain below counts the measured ones.
  drain_quiet
  MEASURE_BASE=$(($(save_count succeeded) + $(save_count failed)))
  measure "$n" "$t" save save.lua "$DURATION" BENCH_FIRST=$((t + half)) BENCH_COUNT=$half BENCH_RUN="m$RANDOM"
  drain_saves "$n" "$t" $((t + SAVES_ACCEPTED)) "$MEASURED_SECONDS"
  stop_all
  local k errors
  for ((k = 1; k <= n; k++)); do
    errors=$(grep -c 'ERROR' "$dir/gw$k/gateway.log" || true)
    if ((errors > 0)); then
      grep -m 5 'ERROR' "$dir/gw$k/gateway.log" >&2 || true
      die "gateway $k: $errors ERROR lines in its log (KEEP=1 keeps $dir)"
    fi
  done
  drop_backing_stores
}

# Waits until no save is still running on any gateway.
drain_quiet() {
  local ended=-1 previous=-2
  for _ in $(seq 600); do
    previous=$ended
    ended=$(($(save_count succeeded) + $(save_count failed)))
    ((ended == previous)) && return 0
    sleep 0.5
  done
}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p snapgate)
fi
[[ -x $BIN ]] || die "$BIN is missing"

# The cluster tests' lock (tests/src/cluster.rs): no test kills a master while we measure.
exec 8>"${TMPDIR:-/tmp}/snapgate-redis-cluster-tests.lock"
log "waiting for the Redis Cluster test lock"
flock 8
"$ROOT/scripts/ensure-redis-cluster.sh" 8>&- || die "the Redis Cluster could not be started"

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -sr)"

# The disk's commit ceiling, for reference: pgbench, CONNECTIONS clients, each transaction
# one small INSERT (every commit waits for its WAL flush; concurrent ones share a flush).
commit_ceiling() {
  PG_DB="snapgate_throughput_commits_$RANDOM$RANDOM"
  psql "$PG_URL/postgres" -qXc "CREATE DATABASE \"$PG_DB\"" >/dev/null
  pg "CREATE TABLE t (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)"
  printf 'INSERT INTO t (note) VALUES (:client_id);\n' >"$WORK/commit.sql"
  local out
  out=$(pgbench -n -c "$CONNECTIONS" -j 2 -T "${DURATION%s}" -f "$WORK/commit.sql" "$PG_URL/$PG_DB" 2>&1) ||
    { printf '%s\n' "$out" >&2; die "pgbench failed"; }
  COMMIT_CEILING=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")
  COMMIT_LATENCY=$(awk '/^latency average = / { print $4 }' <<<"$out")
  log "PostgreSQL commit ceiling: $COMMIT_CEILING commits/s with $CONNECTIONS clients (mean $COMMIT_LATENCY ms)"
  drop_backing_stores
}
if command -v pgbench >/dev/null; then commit_ceiling; fi
for t in $TENANT_COUNTS; do
  for n in $GATEWAY_COUNTS; do
    run_setup "$n" "$t"
  done
done

printf '\n| gateways | tenants | call | req/s | p50 ms | p99 ms | saves done/s (with drain) | req per core-second of the stack | CPU cores: gateways / PG (bench db) / PG (all) / Redis / HAProxy / wrk / samplers | machine busy / others | PG commits/s | WAL syncs/s | Redis calls/s per node | busiest node | slowlog | PG wait events | load1 |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
while IFS=$'\t' read -r n t name p50 p99 rps requests load gw pgb pga rd hp wk sm mach oth commits walsync rnodes rbusy rbusyp rtop slow waits; do
  done_rate="—"
  if [[ $name == save ]]; then
    done_rate=$(awk -v n="$n" -v t="$t" '$1 == n && $2 == t { printf "%s (drain %s s)", $4, $3 }' "$WORK/drain.tsv")
  fi
  # Requests per CPU-second of gateways + bench-database backends + Redis + HAProxy: what the
  # stack costs per call, whatever share of the machine the other tenants of it left us.
  per_core=$(awk -v r="$rps" -v a="$gw" -v b="$pgb" -v c="$rd" -v d="$hp" 'BEGIN { printf "%.0f", r / (a + b + c + d) }')
  printf '| %s | %s | %s | %s | %.2f | %.2f | %s | %s | %s / %s / %s / %s / %s / %s / %s | %s / %s | %s | %s | %s | %s%% (%s) | %s | %s | %s |\n' \
    "$n" "$t" "$name" "$rps" "$(awk -v u="$p50" 'BEGIN { print u / 1000 }')" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" \
    "$done_rate" "$per_core" "$gw" "$pgb" "$pga" "$rd" "$hp" "$wk" "$sm" "$mach" "$oth" "$commits" "$walsync" "$rnodes" "$rbusy" "$rbusyp" "$slow" "$waits" "$load"
  printf '%s gateways, %s tenants, %s: %s\n' "$n" "$t" "$name" "$rtop" >>"$WORK/redis-commands.txt"
done <"$RESULTS"
printf '\n%s threads, %s connections through HAProxy, %s per call, closed loop (wrk); %s domains; %s cores.\n' \
  "$THREADS" "$CONNECTIONS" "$DURATION" "$DOMAINS" "$(nproc)"
[[ -n ${COMMIT_CEILING:-} ]] &&
  printf '\nPostgreSQL alone (pgbench, %s clients, one-row INSERT per transaction): %s commits/s, mean %s ms.\n' \
    "$CONNECTIONS" "$COMMIT_CEILING" "$COMMIT_LATENCY"
printf '\nRedis commands during each measured window (calls/s, mean µs), in table order:\n'
cat "$WORK/redis-commands.txt" 2>/dev/null || true
