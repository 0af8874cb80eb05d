-- GET BENCH_PATH (one state, or a page of the list) under the name BENCH_NAME.
-- Every answer must be 200.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup
wrk.method = "GET"
wrk.path = assert(os.getenv("BENCH_PATH"), "BENCH_PATH is not set")
wrk.headers = common.headers()

response = common.check(200)

function done(summary, latency, _)
  common.done(os.getenv("BENCH_NAME") or "get", summary, latency)
end
