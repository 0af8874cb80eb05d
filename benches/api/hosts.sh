#!/usr/bin/env bash
# Many compute hosts (issue 9). Results and how to read them: docs/BENCHMARKS.md, section
# "Many hosts: placement and outages".
#
#   benches/api/hosts.sh                       # 1 host, then 1,000 hosts
#   HOST_COUNTS="1 500" DURATION=5s benches/api/hosts.sh
#
# For each host count N: generates N libvirt test-driver node files (host 0 and host N-1 hold
# EDGE_DOMAINS domains, every other host PER_HOST), starts the release gateway (SQLite) on them,
# waits until the placement index has read every host's inventory, then measures with wrk
# (closed loop, THREADS threads, CONNECTIONS connections): get one state and save accepted
# (202), for an instance on the first host and on the last. With N > 1 one more host is down
# (a socket nobody listens on) and holds one recorded instance: a save of it must answer 503
# compute_unavailable, and that answer is measured too. The gateway's resident memory is read
# after the inventories and at the end. Any other status or a socket error fails the run.
#
# Knobs: HOST_COUNTS="1 1000" PER_HOST=5 EDGE_DOMAINS=100 DURATION=10s WARMUP=2s THREADS=1
#   CONNECTIONS=1 SKIP_BUILD=1 GATEWAY_BIN=path KEEP=1 STRICT=1 (exit 3 when a ratio > 1.2)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

HOST_COUNTS=${HOST_COUNTS:-1 1000}
PER_HOST=${PER_HOST:-5}
EDGE_DOMAINS=${EDGE_DOMAINS:-100}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${GATEWAY_BIN:-$CARGO_TARGET_DIR/release/snapgate}
# The instance recorded on the host that is down (not in any node file).
DEAD_INSTANCE=b0000000-0000-4000-8000-999999999999

for tool in wrk curl jq awk sqlite3; do
  command -v "$tool" >/dev/null || { echo "hosts.sh: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/snapgate-hosts-bench.XXXXXX")
RESULTS=$WORK/results.tsv
MEMORY=$WORK/memory.tsv
GATEWAY_PID=""

log() { printf '[hosts-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

stop_gateway() {
  if [[ -n $GATEWAY_PID ]]; then
    kill -TERM "$GATEWAY_PID" 2>/dev/null || true
    for _ in $(seq 900); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
    GATEWAY_PID=""
  fi
}

cleanup() {
  stop_gateway
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$GATEWAY_PID/status"; }

# Domains of host k among n: FIRST COUNT.
host_domains() {
  local k=$1 n=$2
  if ((k == 0)); then
    echo "0 $EDGE_DOMAINS"
  elif ((k == n - 1)); then
    echo "$((EDGE_DOMAINS + (n - 2) * PER_HOST)) $EDGE_DOMAINS"
  else
    echo "$((EDGE_DOMAINS + (k - 1) * PER_HOST)) $PER_HOST"
  fi
}

start_gateway() {
  local n=$1 dir=$2 k first count port
  mkdir -p "$dir/nodes" "$dir/data"
  TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '[tokens."%s"]\ntenant = "demo"\nrole = "member"\n' "$TOKEN" >"$dir/tokens.toml"
  port=$(free_port)
  URL="http://127.0.0.1:$port"
  {
    printf 'listen = "127.0.0.1:%s"\ndata_dir = "%s/data"\n' "$port" "$dir"
    printf '[auth]\ntoken_file = "%s/tokens.toml"\n' "$dir"
    for ((k = 0; k < n; k++)); do
      read -r first count < <(host_domains "$k" "$n")
      "$HERE/gen-node.sh" "$count" "$first" >"$dir/nodes/h$k.xml"
      printf '[[hosts]]\nname = "h%d"\nuri = "test://%s/nodes/h%d.xml"\n' "$k" "$dir" "$k"
    done
    if ((n > 1)); then
      printf '[[hosts]]\nname = "dead"\nuri = "test+unix:///default?socket=%s/nobody-listens.sock"\n' "$dir"
    fi
    printf '[compute]\nplacement_refresh_secs = 3600\n'
    printf '[quota.defaults]\nstates = -1\nstate_bytes = -1\nconcurrent_operations = -1\nsaves_per_hour = -1\n'
    printf '[log]\nlevel = "info"\n'
  } >"$dir/snapgate.toml"
  "$BIN" serve --config "$dir/snapgate.toml" >"$dir/gateway.log" 2>&1 &
  GATEWAY_PID=$!
  for _ in $(seq 600); do
    curl -sf "$URL/healthz" >/dev/null 2>&1 && break
    kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$dir/gateway.log" >&2; die "the gateway exited at start"; }
    sleep 0.1
  done
  # Every live host's inventory is in the placement index (the dead one has none).
  local started=$SECONDS read=0
  while ((read < n)); do
    ((SECONDS - started < 600)) || die "only $read of $n inventories read in 10 min"
    sleep 0.5
    read=$(curl -sf "$URL/metrics" | grep -c '^snapgate_placement_inventories_total{' || true)
  done
  log "$n hosts: every inventory read in $((SECONDS - started)) s; RSS $(rss_kib) KiB"
  printf '%s\tafter inventories\t%s\n' "$n" "$(rss_kib)" >>"$MEMORY"
}

wrk_run() {
  local n=$1 where=$2 name=$3 duration=$4
  shift 4
  local out=$WORK/$n-$where-$name.wrk.txt
  env BENCH_LUA_DIR="$HERE/lua" BENCH_TOKEN="$TOKEN" BENCH_THREADS="$THREADS" BENCH_NAME="$name" "$@" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --latency -s "$HERE/lua/$SCRIPT" "$URL" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk $name failed"; }
  local result
  result=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "wrk $name printed no RESULT"; }
  grep '^SAMPLE ' "$out" >&2 || true
  [[ $(sed -E 's/.* unexpected=([0-9]+).*/\1/' <<<"$result") == 0 ]] || die "$n hosts $where $name: unexpected statuses"
  [[ $(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$result") == 0 ]] || die "$n hosts $where $name: socket errors"
  [[ $name == warmup* ]] && return 0
  log "$n hosts, $where: $result"
  awk -v n="$n" -v w="$where" -v load1="$(cut -d' ' -f1 /proc/loadavg)" '{
      for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print n "\t" w "\t" $2 "\t" v["p50_us"] "\t" v["p90_us"] "\t" v["p99_us"] "\t" v["rps"] "\t" load1
    }' <<<"$result" >>"$RESULTS"
}

# measure N WHERE FIRST_DOMAIN: get one state of the host's first domain, then saves over its
# other domains.
measure() {
  local n=$1 where=$2 first=$3 accepted op page
  local instance
  instance=$(instance_uuid "$first")
  accepted=$(call 202 POST "/v1/instances/$instance/states" '{"name":"measured"}')
  op=$(jq -r .operation <<<"$accepted")
  [[ $(call 200 GET "/v1/operations/$op/wait?timeout=60" | jq -r .status) == succeeded ]] || die "preparing a state on $instance"
  local state_path="/v1/instances/$instance/states/$(jq -r .uuid <<<"$accepted")"
  SCRIPT=read.lua wrk_run "$n" "$where" warmup-get "$WARMUP" BENCH_PATH="$state_path"
  SCRIPT=read.lua wrk_run "$n" "$where" get "$DURATION" BENCH_PATH="$state_path"
  SCRIPT=save.lua wrk_run "$n" "$where" warmup-save "$WARMUP" BENCH_FIRST=$((first + 1)) BENCH_COUNT=$((EDGE_DOMAINS - 1)) BENCH_RUN="w$RANDOM"
  SCRIPT=save.lua wrk_run "$n" "$where" save "$DURATION" BENCH_FIRST=$((first + 1)) BENCH_COUNT=$((EDGE_DOMAINS - 1)) BENCH_RUN="m$RANDOM"
}

run_hosts() {
  local n=$1 dir=$WORK/hosts-$n
  log "$n hosts: generating nodes and starting the gateway"
  start_gateway "$n" "$dir"
  measure "$n" first 0
  if ((n > 1)); then
    measure "$n" last "$(host_domains $((n - 1)) "$n" | cut -d' ' -f1)"
    # An instance the index records on the host that is down: its save is refused by the
    # breaker. (The uuid is stored as 16 raw bytes on SQLite.)
    sqlite3 "$dir/data/snapgate.db" \
      "INSERT INTO instance_placements (instance_uuid, host, owner_tenant, updated_at) VALUES (X'$(tr -d - <<<"$DEAD_INSTANCE")', 'dead', 'demo', '2026-12-01T00:00:00+00:00')"
    SCRIPT=read.lua wrk_run "$n" dead refused "$DURATION" BENCH_PATH="/v1/instances/$DEAD_INSTANCE/states" \
      BENCH_METHOD=POST BENCH_BODY='{"name":"refused"}' BENCH_EXPECT=503
  fi
  printf '%s\tend of run\t%s\n' "$n" "$(rss_kib)" >>"$MEMORY"
  stop_gateway
}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p snapgate)
fi
[[ -x $BIN ]] || die "$BIN is missing"

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $HOST_COUNTS; do
  run_hosts "$n"
done

# Ratios against the first host count's "first" row, per call.
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
missed=0
printf '\n| hosts | instance on | call | p50 ms | p90 ms | p99 ms | req/s | load1 | p50 vs %s host(s) |\n' "${HOST_COUNTS%% *}"
printf '|---|---|---|---|---|---|---|---|---|\n'
while IFS=$'\t' read -r n where name p50 p90 p99 rps load; do
  base=$(awk -F'\t' -v c="$name" -v n0="${HOST_COUNTS%% *}" '$1 == n0 && $2 == "first" && $3 == c { print $4; exit }' "$RESULTS")
  ratio="–"
  if [[ -n $base && $name != refused ]]; then
    ratio=$(awk -v a="$p50" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
    if awk -v r="$ratio" 'BEGIN { exit !(r > 1.2) }'; then
      ratio="**$ratio (> 1.2)**"
      missed=$((missed + 1))
    fi
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$where" "$name" \
    "$(ms "$p50")" "$(ms "$p90")" "$(ms "$p99")" "$rps" "$load" "$ratio"
done <"$RESULTS"
printf '\n| hosts | when | gateway RSS MiB |\n|---|---|---|\n'
while IFS=$'\t' read -r n when kib; do
  printf '| %s | %s | %s |\n' "$n" "$when" "$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')"
done <"$MEMORY"
printf '\n%s threads, %s connections, %s per call, closed loop (wrk); %s domains per host, %s on the first and last.\n' \
  "$THREADS" "$CONNECTIONS" "$DURATION" "$PER_HOST" "$EDGE_DOMAINS"
if ((missed > 0)); then
  log "$missed ratio(s) above 1.2"
  [[ ${STRICT:-0} == 1 ]] && exit 3
fi
exit 0
