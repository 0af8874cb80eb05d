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

-- Only resources the operation asks for are checked: a restore (no new state) still runs for
-- a tenant whose limit was lowered below what it already holds.
local held = { { t.states, t.r_states }, { t.bytes, t.r_bytes }, { 0, t.r_ops } }
for r = 1, 3 do
  local in_use, reserved = held[r][1], held[r][2]
  if want[r] > 0 and limit[r] >= 0 and in_use + reserved + want[r] > limit[r] then
    return { 1, r, limit[r], in_use, reserved, want[r] }
  end
end

if want[4] > 0 and limit[4] >= 0 then
  if want[4] > limit[4] then
    -- Waiting would never help: this is a plain "exceeded", not a rate limit.
    return { 1, 4, limit[4], t.window - t.r_saves, t.r_saves, want[4] }
  end
  local must_leave = t.window + want[4] - limit[4]
  if must_leave > 0 then
    local entry = redis.call('ZRANGE', KEYS[3], must_leave - 1, must_leave - 1, 'WITHSCORES')
    local secs = math.ceil((tonumber(entry[2]) + HOUR_MS - now) / 1000)
    if secs < 1 then secs = 1 end
    return { 2, secs }
  end
end

local lease = { states = want[1], bytes = want[2], ops = want[3], saves = want[4], expires = now + lease_ms }
redis.call('HSET', KEYS[2], op, encode_lease(lease))
if want[4] > 0 then
  for i = 1, want[4] do
    redis.call('ZADD', KEYS[3], now, op .. '#' .. i)
  end
  -- Every entry is older than an hour by then; the key cleans itself up for idle tenants.
  redis.call('PEXPIRE', KEYS[3], HOUR_MS + 60000)
end
return { 0, 0 }
