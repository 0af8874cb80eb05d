-- Sets one tenant's in-use to the database's totals and makes its reservations exactly the
-- live operations the database shows for it: a live lease already held is kept as it is,
-- others are dropped (with their saves, as a release would), missing ones are recreated.
-- A lease younger than the grace is kept when the database does not show its operation at all:
-- a save reserves here before its accepting write reaches the database, so the database read
-- this rebuild writes may predate it. Dropping it would free a unit another save could take
-- while this one is still accepted (over-admission); kept, it is committed or released by its
-- operation, or lapses with its lease if that operation never shows up.
-- Then the committed saves of the last hour the database shows are put back in the window at
-- their start time, unless the window holds them already, and this Redis process owns the
-- tenant (see `is_fresh`).
-- KEYS: inuse, resv, saves, owner, rebuild, then the op-marker of each live operation (same order as ARGV)
-- ARGV: token ('' = unconditional), states, bytes, lease_ms, n_live, grace_ms,
--       then per live operation 5 values: op, states, bytes, operations, saves;
--       then per committed save 2 values: op, started_at_ms
-- Reply: {dropped, recreated, restored_saves}, or {-1} when the token is no longer current: an
-- end ran since `rebuild_begin.lua`, so the database read may miss it; read again and retry.
if ARGV[1] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[1] then
  return { -1 }
end
local now = now_ms()
local lease_ms = tonumber(ARGV[4])
local n_live = tonumber(ARGV[5])
local grace_ms = tonumber(ARGV[6])
local first_save = 7 + 5 * n_live
local wanted = {}
local order = {}
for i = 7, first_save - 1, 5 do
  local op = ARGV[i]
  wanted[op] = {
    states = tonumber(ARGV[i + 1]), bytes = tonumber(ARGV[i + 2]),
    ops = tonumber(ARGV[i + 3]), saves = tonumber(ARGV[i + 4]),
    marker = KEYS[5 + (i - 7) / 5 + 1],
  }
  order[#order + 1] = op
end

-- Saves the database shows succeeded have ended, however young their lease: only their end
-- has not reached Redis yet (or never will: their gateway died).
local ended = {}
for i = first_save, #ARGV, 2 do
  ended[ARGV[i]] = true
end

local live = normalize(KEYS[2], KEYS[3], now)
local dropped = 0
for op, lease in pairs(live) do
  if not wanted[op] and (ended[op] or now - lease.created >= grace_ms) then
    redis.call('HDEL', KEYS[2], op)
    remove_saves(KEYS[3], op, lease.saves)
    dropped = dropped + 1
  end
end

local recreated = 0
for _, op in ipairs(order) do
  local w = wanted[op]
  -- An operation that already committed or released here only lags in the database: recreating
  -- its reservation would count it twice.
  if not live[op] and redis.call('EXISTS', w.marker) == 0 then
    local lease = { states = w.states, bytes = w.bytes, ops = w.ops, saves = w.saves, expires = now + lease_ms, created = now }
    redis.call('HSET', KEYS[2], op, encode_lease(lease))
    for i = 1, w.saves do
      redis.call('ZADD', KEYS[3], now, op .. '#' .. i)
    end
    if w.saves > 0 then
      redis.call('PEXPIRE', KEYS[3], HOUR_MS + 60000)
    end
    recreated = recreated + 1
  end
end

-- After the leases: a save the database shows succeeded whose lease was just dropped (its
-- commit here lags) goes back in as committed. A save is one entry "<op>#1"; NX keeps an entry
-- already there at its own time.
local restored = 0
for i = first_save, #ARGV, 2 do
  local at = tonumber(ARGV[i + 1])
  if at > now - HOUR_MS and redis.call('ZADD', KEYS[3], 'NX', at, ARGV[i] .. '#1') == 1 then
    restored = restored + 1
  end
end
if restored > 0 then
  redis.call('PEXPIRE', KEYS[3], HOUR_MS + 60000)
end

redis.call('HSET', KEYS[1], 'states', ARGV[2], 'bytes', ARGV[3])
redis.call('SET', KEYS[4], server_id())
redis.call('DEL', KEYS[5])
return { dropped, recreated, restored }
