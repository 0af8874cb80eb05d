-- BENCH_METHOD (default GET) BENCH_PATH (one state, a page of the list, or a save that must be
-- refused) under the name BENCH_NAME, with BENCH_BODY if set. Every answer must be
-- BENCH_EXPECT (default 200).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = assert(os.getenv("BENCH_PATH"), "BENCH_PATH is not set")
wrk.headers = common.headers()
wrk.body = os.getenv("BENCH_BODY")

response = common.check(tonumber(os.getenv("BENCH_EXPECT") or "200"))

function done(summary, latency, _)
  common.done(os.getenv("BENCH_NAME") or "get", summary, latency)
end
