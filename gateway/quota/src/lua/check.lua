-- Whether reserve.lua would accept a request now, changing nothing (dry runs). Loaded with
-- the `no-writes` flag (see scripts.rs): Redis itself refuses any write from this script.
-- Lapsed leases and saves older than the hour are skipped, not dropped: reserve.lua drops
-- them before it decides, so both see the same numbers.
-- A tenant not fresh on this Redis process answers STALE, as reserve.lua does: this script
-- cannot write, so it never rebuilds; the gateway rebuilds the tenant and asks again.
-- KEYS: inuse, resv, saves, owner
-- ARGV: states, bytes, operations, saves,
--       limit_states, limit_bytes, limit_operations, limit_saves (negative = unlimited)
-- Reply: {0, 0} it would fit, or reserve.lua's refusal ({1, …} or {2, retry_after_secs}),
-- or the error SGSTALE
local want = { tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]) }
local limit = { tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]) }
local now = now_ms()

if not is_fresh(KEYS[4]) then
  return stale()
end

local flat = redis.call('HGETALL', KEYS[2])
local live, lapsed = {}, {}
for i = 1, #flat, 2 do
  local op, lease = flat[i], decode_lease(flat[i + 1])
  if lease.expires <= now then
    lapsed[op] = true
  else
    live[op] = lease
  end
end

-- Saves of the window, oldest first, without those of lapsed leases (members are "<op>#<n>").
local entries = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. int(now - HOUR_MS), '+inf', 'WITHSCORES')
local window = {}
for i = 1, #entries, 2 do
  local op = string.match(entries[i], '^(.*)#%d+$')
  if not lapsed[op] then
    window[#window + 1] = tonumber(entries[i + 1])
  end
end

local vals = redis.call('HMGET', KEYS[1], 'states', 'bytes')
local t = {
  states = tonumber(vals[1]) or 0, bytes = tonumber(vals[2]) or 0,
  r_states = 0, r_bytes = 0, r_ops = 0, r_saves = 0, window = #window,
}
for _, l in pairs(live) do
  t.r_states = t.r_states + l.states
  t.r_bytes = t.r_bytes + l.bytes
  t.r_ops = t.r_ops + l.ops
  t.r_saves = t.r_saves + l.saves
end

local refusal = decide(t, want, limit, now, function(i) return window[i] end)
if refusal then
  return refusal
end
return { 0, 0 }
