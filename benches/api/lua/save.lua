-- POST /v1/instances/{id}/states with a unique name, spread round-robin over the instances
-- b0000000-0000-4000-8000-<BENCH_FIRST .. BENCH_FIRST+BENCH_COUNT-1> (see gen-node.sh), so
-- that an instance comes back only after BENCH_COUNT other saves: the one-operation-per-
-- instance rule (409 instance_busy) is not what is measured. Every answer must be 202.
-- With BENCH_TOKENS (one token per tenant), instance i is saved with token i mod #tokens.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup

local first = tonumber(os.getenv("BENCH_FIRST") or "1")
local count = tonumber(os.getenv("BENCH_COUNT") or error("BENCH_COUNT is not set"))
local nthreads = tonumber(os.getenv("BENCH_THREADS") or error("BENCH_THREADS is not set"))
local run = os.getenv("BENCH_RUN") or "run"
local headers = {}
for k, token in ipairs(common.tokens()) do
  headers[k] = common.headers(token)
end
local sent = 0

response = common.check(202)

function request()
  -- Thread t sends to instances t, t + nthreads, t + 2*nthreads, … (mod count).
  local slot = (sent * nthreads + tid) % count
  sent = sent + 1
  local instance = first + slot
  local path = string.format("/v1/instances/b0000000-0000-4000-8000-%012d/states", instance)
  local body = string.format('{"name":"%s-t%d-%d"}', run, tid, sent)
  return wrk.format("POST", path, headers[instance % #headers + 1], body)
end

function done(summary, latency, _)
  common.done("save", summary, latency)
end
