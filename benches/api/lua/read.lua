-- BENCH_METHOD (default GET) BENCH_PATH (one state, a page of the list, or a save that must be
-- refused) under the name BENCH_NAME, with BENCH_BODY if set. Every answer must be
-- BENCH_EXPECT (default 200). With BENCH_PATHS (space-separated) and BENCH_TOKENS (one token
-- per path), requests cycle over the paths, each with its own token (one state per tenant).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH")
  or string.match(assert(os.getenv("BENCH_PATHS"), "BENCH_PATH is not set"), "%S+")
wrk.headers = common.headers()
wrk.body = os.getenv("BENCH_BODY")

if os.getenv("BENCH_PATHS") then
  local requests = {}
  local tokens = common.tokens()
  for p in string.gmatch(os.getenv("BENCH_PATHS"), "%S+") do
    local token = assert(tokens[#requests + 1], "BENCH_TOKENS needs one token per path")
    table.insert(requests, wrk.format(wrk.method, p, common.headers(token), wrk.body))
  end
  local sent = 0
  function request()
    sent = sent + 1
    return requests[sent % #requests + 1]
  end
end

response = common.check(tonumber(os.getenv("BENCH_EXPECT") or "200"))

function done(summary, latency, _)
  common.done(os.getenv("BENCH_NAME") or "get", summary, latency)
end
