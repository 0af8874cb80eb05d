-- Checks every resource and reserves all of them, or none.
-- KEYS: inuse, resv, saves, op-marker, owner
-- ARGV: op, states, bytes, operations, saves, lease_ms,
--       limit_states, limit_bytes, limit_operations, limit_saves (negative = unlimited)
-- Reply: {0, why} reserved (why 0) or nothing to do (1: operation ended, 2: already reserved)
--        {1, resource, limit, in_use, reserved, requested}  resource 1..4 as QuotaResource::ALL
--        {2, retry_after_secs}                               hourly save rate reached
local op = ARGV[1]
local want = { tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]) }
local lease_ms = tonumber(ARGV[6])
local limit = { tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]) }

if not is_fresh(KEYS[5]) then
  return stale()
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  return { 0, 1 }
end
local now = now_ms()
local live = normalize(KEYS[2], KEYS[3], now)
if live[op] then
  return { 0, 2 }
end
local t = tally(KEYS[1], KEYS[3], live)

local refusal = decide(t, want, limit, now, function(i)
  local entry = redis.call('ZRANGE', KEYS[3], i - 1, i - 1, 'WITHSCORES')
  return tonumber(entry[2])
end)
if refusal then
  return refusal
end

local lease = { states = want[1], bytes = want[2], ops = want[3], saves = want[4], expires = now + lease_ms, created = now }
redis.call('HSET', KEYS[2], op, encode_lease(lease))
if want[4] > 0 then
  for i = 1, want[4] do
    redis.call('ZADD', KEYS[3], now, op .. '#' .. i)
  end
  -- Every entry is older than an hour by then; the key cleans itself up for idle tenants.
  redis.call('PEXPIRE', KEYS[3], HOUR_MS + 60000)
end
return { 0, 0 }
