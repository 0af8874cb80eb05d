-- Shared by save.lua, get.lua and list.lua (loaded with dofile; wrk runs one script per
-- thread plus one for setup/done). Counts responses whose status is not the expected one and
-- prints one machine-readable RESULT line that run.sh parses.
--
-- Environment (set by run.sh): BENCH_TOKEN (a member token of tenant "demo"), BENCH_THREADS.

local M = {}

local threads = {}

-- Main state: number the threads so each one can take its own share of the instances.
function M.setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function M.headers(token)
  return {
    ["Authorization"] = "Bearer " .. (token or assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN is not set")),
    ["Content-Type"] = "application/json",
  }
end

-- BENCH_TOKENS: space-separated tokens, one per tenant (tenant k owns the instances i with
-- i mod #tokens == k, see gen-node.sh). Unset: the one BENCH_TOKEN.
function M.tokens()
  local list = {}
  for t in string.gmatch(os.getenv("BENCH_TOKENS") or "", "%S+") do
    table.insert(list, t)
  end
  if #list == 0 then
    list[1] = assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN is not set")
  end
  return list
end

-- Thread state: `unexpected` and `sample` are globals so done() can read them with thread:get.
function M.check(expected)
  unexpected = 0
  return function(status, _, body)
    if status ~= expected then
      unexpected = unexpected + 1
      if sample == nil then
        sample = tostring(status) .. " " .. string.sub(body or "", 1, 300)
      end
    end
  end
end

-- Main state, after the run. Latencies are in microseconds.
function M.done(name, summary, latency)
  local unexpected_total, first_sample = 0, nil
  for _, t in ipairs(threads) do
    unexpected_total = unexpected_total + (t:get("unexpected") or 0)
    first_sample = first_sample or t:get("sample")
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT %s p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d rps=%.0f requests=%d unexpected=%d socket_errors=%d\n",
    name,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    summary.requests / seconds, summary.requests, unexpected_total,
    e.connect + e.read + e.write + e.timeout))
  if first_sample then
    io.write("SAMPLE " .. name .. " " .. first_sample .. "\n")
  end
end

return M
