#!/usr/bin/env bash
# States API latency benchmark (issue 2). Results and how to read them: docs/BENCHMARKS.md,
# section "States API latency".
#
#   benches/api/run.sh                       # SQLite, then PostgreSQL + Redis
#   BACKENDS=sqlite DURATION=10s benches/api/run.sh
#
# For each backend: starts the release gateway on a generated libvirt test-driver node with
# DOMAINS running domains of tenant "demo", pre-creates 50 states on one instance, then drives
# a closed-loop load with wrk (THREADS threads, CONNECTIONS connections, one request in flight
# per connection) against: save accepted (202), get one state (200), list 50 states (200).
# Any other status, or any socket error, fails the run. Everything it starts (gateway,
# PostgreSQL database, Redis keys, temp dir) is removed on exit, also on failure or Ctrl-C.
#
# Knobs (environment): DOMAINS=2000 DURATION=20s WARMUP=3s THREADS=2 CONNECTIONS=4
#   BACKENDS="sqlite postgres"  PG_URL=postgres://postgres@127.0.0.1:5432
#   REDIS_URL=redis://127.0.0.1:6379 (used by the postgres backend; REDIS_URL= to skip)
#   SKIP_BUILD=1 (reuse the binary; GATEWAY_BIN=path picks another)  KEEP=1 (keep the temp dir: logs, wrk output)
#   STRICT=1 (exit 3 when a latency target is missed)  RUST_LOG (gateway log filter)
#   PERF=1 (perf record the gateway during each measured call; top symbols in the output)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DOMAINS=${DOMAINS:-2000}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-4}
BACKENDS=${BACKENDS:-sqlite postgres}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
REDIS_URL=${REDIS_URL-redis://127.0.0.1:6379}
LIST_SIZE=50
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${GATEWAY_BIN:-$CARGO_TARGET_DIR/release/snapgate}

# Targets of issue 11 (tighter than issue 2's), in microseconds: "backend test stat limit".
TARGETS="sqlite save p50 1000
sqlite save p99 3000
sqlite get p50 300
sqlite list p50 800
postgres save p50 1500
postgres save p99 4000
postgres get p50 500
postgres list p50 2000"

for tool in wrk curl jq awk; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/snapgate-api-bench.XXXXXX")
RESULTS=$WORK/results.tsv
GATEWAY_PID=""
PG_DB=""
REDIS_PREFIX=""

log() { printf '[api-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

stop_gateway() {
  if [[ -n $GATEWAY_PID ]]; then
    kill -TERM "$GATEWAY_PID" 2>/dev/null || true
    # The gateway waits up to snapshots.shutdown_grace_secs (60 s) for running operations.
    for _ in $(seq 900); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
    GATEWAY_PID=""
  fi
}

drop_backing_stores() {
  if [[ -n $PG_DB ]]; then
    psql "$PG_URL/postgres" -qXc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null ||
      log "could not drop PostgreSQL database $PG_DB: drop it by hand"
    PG_DB=""
  fi
  if [[ -n $REDIS_PREFIX ]]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$REDIS_PREFIX*" |
      xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null ||
      log "could not delete Redis keys $REDIS_PREFIX*: delete them by hand"
    REDIS_PREFIX=""
  fi
}

cleanup() {
  stop_gateway
  drop_backing_stores
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# curl wrapper: prints the body, fails unless the status is $1.
call() {
  local expect=$1 method=$2 path=$3 body=${4:-}
  local out status
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} -w '\n%{http_code}' "$URL$path")
  status=${out##*$'\n'}
  [[ $status == "$expect" ]] || die "$method $path: expected $expect, got $status: ${out%$'\n'*}"
  printf '%s' "${out%$'\n'*}"
}

instance_uuid() { printf 'b0000000-0000-4000-8000-%012d' "$1"; }

start_gateway() {
  local backend=$1 dir=$2 db_url
  case $backend in
    sqlite) db_url="sqlite://$dir/snapgate.db?mode=rwc" ;;
    postgres)
      PG_DB="snapgate_api_bench_$RANDOM$RANDOM"
      psql "$PG_URL/postgres" -qXc "CREATE DATABASE \"$PG_DB\"" >/dev/null ||
        die "PostgreSQL at $PG_URL is required for the postgres backend"
      db_url="$PG_URL/$PG_DB"
      ;;
    *) die "unknown backend $backend (sqlite or postgres)" ;;
  esac
  TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '[tokens."%s"]\ntenant = "demo"\nrole = "member"\n' "$TOKEN" >"$dir/tokens.toml"
  "$HERE/gen-node.sh" "$DOMAINS" >"$dir/node.xml"
  local port admin_port
  port=$(free_port)
  admin_port=$(free_port)
  URL="http://127.0.0.1:$port"
  # Metrics are served on the operator's listener only.
  METRICS_URL="http://127.0.0.1:$admin_port/metrics"
  {
    printf 'listen = "127.0.0.1:%s"\ndata_dir = "%s/data"\n' "$port" "$dir"
    printf '[database]\nurl = "%s"\n' "$db_url"
    if [[ $backend == postgres && -n $REDIS_URL ]]; then
      REDIS_PREFIX="sgbench$RANDOM$RANDOM"
      redis-cli -u "$REDIS_URL" PING >/dev/null || die "Redis at $REDIS_URL is required (or set REDIS_URL=)"
      printf '[redis]\nurl = "%s"\nkey_prefix = "%s"\n' "$REDIS_URL" "$REDIS_PREFIX"
    fi
    printf '[auth]\ntoken_file = "%s/tokens.toml"\n' "$dir"
    printf '[[hosts]]\nname = "bench"\nuri = "test://%s/node.xml"\n' "$dir"
    # The test driver parses the whole node file when it connects: 10,000 domains on a loaded
    # machine take longer than the default 5 s, which would open the host's breaker.
    printf '[compute]\nconnect_timeout_secs = 120\ncall_timeout_secs = 30\n'
    # Unlimited: the benchmark measures the API, not the quota refusals.
    printf '[quota.defaults]\nstates = -1\nstate_bytes = -1\nconcurrent_operations = -1\nsaves_per_hour = -1\n'
    printf '[log]\nlevel = "info"\n'
    printf '[api]\nadmin_listen = "127.0.0.1:%s"\n' "$admin_port"
  } >"$dir/snapgate.toml"
  mkdir -p "$dir/data"
  "$BIN" serve --config "$dir/snapgate.toml" >"$dir/gateway.log" 2>&1 &
  GATEWAY_PID=$!
  for _ in $(seq 600); do
    curl -sf "$URL/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$dir/gateway.log" >&2; die "the gateway exited at start"; }
    sleep 0.1
  done
  cat "$dir/gateway.log" >&2
  die "the gateway did not become healthy in 60 s"
}

# Saves LIST_SIZE states on instance 0, one after the other (one operation per instance).
prepare_states() {
  local instance i accepted op status
  instance=$(instance_uuid 0)
  for ((i = 1; i <= LIST_SIZE; i++)); do
    accepted=$(call 202 POST "/v1/instances/$instance/states" "{\"name\":\"listed-$i\"}")
    op=$(jq -r .operation <<<"$accepted")
    status=$(call 200 GET "/v1/operations/$op/wait?timeout=60" | jq -r .status)
    [[ $status == succeeded ]] || die "preparing state listed-$i: operation $op ended $status"
  done
  local page
  page=$(call 200 GET "/v1/instances/$instance/states?limit=$LIST_SIZE")
  [[ $(jq '.values | length' <<<"$page") == "$LIST_SIZE" ]] || die "the list does not hold $LIST_SIZE states"
  STATE_PATH="/v1/instances/$instance/states/$(jq -r '.values[0].uuid' <<<"$page")"
  LIST_PATH="/v1/instances/$instance/states?limit=$LIST_SIZE"
  call 200 GET "$STATE_PATH" >/dev/null
}

# wrk_run BACKEND NAME SCRIPT DURATION [ENV…]: one wrk run; appends its RESULT to $RESULTS
# unless NAME starts with "warmup-".
wrk_run() {
  local backend=$1 name=$2 script=$3 duration=$4
  shift 4
  local out=$WORK/$backend-$name.wrk.txt perf_pid=""
  if [[ ${PERF:-0} == 1 && $name != warmup-* ]]; then
    perf record -F 999 -g -p "$GATEWAY_PID" -o "$WORK/$backend-$name.perf.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  env BENCH_LUA_DIR="$HERE/lua" BENCH_TOKEN="$TOKEN" BENCH_THREADS="$THREADS" BENCH_NAME="$name" "$@" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --latency -s "$HERE/lua/$script" "$URL" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk $name failed"; }
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf report -i "$WORK/$backend-$name.perf.data" --stdio --no-children -g none --sort dso,sym 2>/dev/null |
      grep -v '^#' | grep '%' | head -40 >"$WORK/$backend-$name.perf.txt" || true
    log "$backend $name: hottest symbols (perf, whole gateway process):"
    head -15 "$WORK/$backend-$name.perf.txt" >&2
  fi
  local result
  result=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "wrk $name printed no RESULT"; }
  grep '^SAMPLE ' "$out" >&2 || true
  local unexpected socket_errors
  unexpected=$(sed -E 's/.* unexpected=([0-9]+).*/\1/' <<<"$result")
  socket_errors=$(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$result")
  [[ $unexpected == 0 ]] || die "$backend $name: $unexpected responses with an unexpected status (see SAMPLE above)"
  [[ $socket_errors == 0 ]] || die "$backend $name: $socket_errors socket errors or timeouts"
  if [[ $script == save.lua ]]; then
    SAVES_ACCEPTED=$((SAVES_ACCEPTED + $(sed -E 's/.* requests=([0-9]+).*/\1/' <<<"$result")))
  fi
  [[ $name == warmup-* ]] && return 0
  log "$backend $result"
  # backend test p50 p90 p99 p999 max rps requests load1
  awk -v b="$backend" -v load1="$(cut -d' ' -f1 /proc/loadavg)" '{
      for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print b "\t" $2 "\t" v["p50_us"] "\t" v["p90_us"] "\t" v["p99_us"] "\t" v["p999_us"] "\t" v["max_us"] "\t" v["rps"] "\t" v["requests"] "\t" load1
    }' <<<"$result" >>"$RESULTS"
}

run_backend() {
  local backend=$1 dir=$WORK/$backend
  mkdir -p "$dir"
  log "$backend: starting the gateway ($DOMAINS domains)"
  start_gateway "$backend" "$dir"
  SAVES_ACCEPTED=0
  prepare_states
  log "$backend: $LIST_SIZE states ready; measuring ($THREADS threads, $CONNECTIONS connections, $DURATION each)"

  wrk_run "$backend" warmup-get read.lua "$WARMUP" BENCH_PATH="$STATE_PATH"
  wrk_run "$backend" get read.lua "$DURATION" BENCH_PATH="$STATE_PATH"
  wrk_run "$backend" list read.lua "$DURATION" BENCH_PATH="$LIST_PATH"
  # Instance 0 holds the listed states; saves go to instances 1 … DOMAINS-1.
  # Warm-up and measurement use disjoint halves of the instances: a save the warm-up started
  # may still be running (on PostgreSQL the background work lags the 202s), and its instance
  # would answer 409 instance_busy.
  local half=$(((DOMAINS - 1) / 2))
  wrk_run "$backend" warmup-save save.lua "$WARMUP" BENCH_FIRST=1 BENCH_COUNT=$half BENCH_RUN="w$RANDOM"
  wrk_run "$backend" save save.lua "$DURATION" BENCH_FIRST=$((1 + half)) BENCH_COUNT=$half BENCH_RUN="m$RANDOM"

  # A 202 is only worth measuring if the work behind it succeeds: wait for every accepted save
  # to end and check they all succeeded.
  drain_saves "$backend" $((LIST_SIZE + SAVES_ACCEPTED))
  # Server-side request durations by route (Prometheus), to tell gateway time from queueing.
  curl -sf "$METRICS_URL" | grep '^snapgate_http_request_duration_seconds' >"$WORK/$backend-metrics.txt" || true
  stop_gateway
  drop_backing_stores
  local errors
  errors=$(grep -c 'ERROR' "$dir/gateway.log" || true)
  if ((errors > 0)); then
    grep -m 5 'ERROR' "$dir/gateway.log" >&2 || true
    die "$backend: $errors ERROR lines in the gateway log (KEEP=1 keeps $dir/gateway.log)"
  fi
}

# save_count RESULT: the number of save operations that ended with RESULT, from /metrics.
save_count() {
  curl -sf "$METRICS_URL" |
    awk -v r="$1" '/^snapgate_operations_total\{/ && /kind="save"/ && $0 ~ "result=\"" r "\"" { n += $NF } END { print n + 0 }'
}

# drain_saves BACKEND AT_LEAST: waits (up to 5 min) until at least AT_LEAST saves ended and
# none is still ending, then fails if any did not succeed. wrk does not count the requests in
# flight when it stops, so the gateway may have accepted a few more than wrk reported.
drain_saves() {
  local backend=$1 at_least=$2 ended=-1 previous=-2 started=$SECONDS
  while ((ended < at_least || ended != previous)); do
    ((SECONDS - started < 300)) || die "$backend: only $ended of at least $at_least saves ended in 5 min"
    previous=$ended
    sleep 1
    ended=$(($(save_count succeeded) + $(save_count failed)))
  done
  local failed
  failed=$(save_count failed)
  log "$backend: $ended saves ended in $((SECONDS - started)) s after the load stopped; $failed failed"
  if ((failed > 0)); then
    grep -m 5 'operation failed' "$WORK/$backend/gateway.log" >&2 || true
    die "$backend: saves accepted under load failed"
  fi
}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p snapgate)
fi
[[ -x $BIN ]] || die "$BIN is missing"

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -sr)"
for backend in $BACKENDS; do
  run_backend "$backend"
done

# The table, with each target checked.
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
missed=0
printf '\n| backend | call | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | req/s | requests | load1 | target |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
while IFS=$'\t' read -r backend name p50 p90 p99 p999 max rps requests load; do
  verdict=""
  while read -r tb t stat limit; do
    [[ $tb == "$backend" && $t == "$name" ]] || continue
    value=$p50
    [[ $stat == p99 ]] && value=$p99
    if ((value <= limit)); then
      verdict+="$stat ≤ $((limit / 1000)).$(printf '%03d' $((limit % 1000))) ms met; "
    else
      verdict+="**$stat ≤ $((limit / 1000)).$(printf '%03d' $((limit % 1000))) ms MISSED**; "
      missed=$((missed + 1))
    fi
  done <<<"$TARGETS"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$backend" "$name" \
    "$(ms "$p50")" "$(ms "$p90")" "$(ms "$p99")" "$(ms "$p999")" "$(ms "$max")" "$rps" "$requests" "$load" "${verdict%; }"
done <"$RESULTS"
printf '\n%s threads, %s connections, %s per call, closed loop (wrk); %s domains.\n' "$THREADS" "$CONNECTIONS" "$DURATION" "$DOMAINS"
if ((missed > 0)); then
  log "$missed target(s) missed"
  [[ ${STRICT:-0} == 1 ]] && exit 3
fi
exit 0
