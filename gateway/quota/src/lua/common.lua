-- Helpers shared by every quota script. `scripts.rs` prepends this file to each script so
-- every script stays one self-contained EVALSHA call.
--
-- Keys of one tenant (all share the tenant's hash tag, so a script touches one slot):
--   inuse  hash    states, bytes              what the database holds (committed states)
--   resv   hash    operation id -> lease      reservations, see encode_lease
--   saves  zset    "<op>#<n>" scored by ms    saves of the last hour (committed and reserved)
--   op:<id>, freed:<id>  strings with a TTL   "this operation already ended" markers
--   owner  string  run id of the Redis process that last rebuilt the tenant from the database
--   rebuild string token of a rebuild in progress (deleted by any end: the rebuild must re-read)
--
-- Freshness: the tenant's data is trusted only on the Redis process that rebuilt it (`owner`).
-- Anywhere else — a replica promoted after its master died (replication is asynchronous, so
-- it may lack the last writes), a restart that reloaded an older snapshot, a slot moved to
-- another node — reserve, check, usage and add_in_use answer the error STALE and the gateway
-- rebuilds the tenant from the database first (`redis_store/rebuild.rs`).
--
-- Time comes from the Redis server (TIME), not from the gateways: every gateway then agrees on
-- when a lease lapses and when a save leaves the hourly window, whatever their clocks say.
-- Redis 7 replicates scripts by their effects, so calling TIME before writing is allowed.

local HOUR_MS = 3600000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers go back to Redis through '%d': tostring() would write large numbers as 1e+15.
local function int(x)
  return string.format('%d', x)
end

-- A lease is stored as "states:bytes:operations:saves:expires_at_ms:created_at_ms". Leases
-- written before the creation time was kept have five fields and count as old (created 0).
local function decode_lease(raw)
  local s, b, o, v, e, c = string.match(raw, '^(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d+):?(%-?%d*)$')
  if not s then
    error('snapgate-quota: malformed lease ' .. raw)
  end
  return {
    states = tonumber(s), bytes = tonumber(b), ops = tonumber(o), saves = tonumber(v),
    expires = tonumber(e), created = tonumber(c) or 0,
  }
end

local function encode_lease(l)
  return string.format('%d:%d:%d:%d:%d:%d', l.states, l.bytes, l.ops, l.saves, l.expires, l.created or 0)
end

local function remove_saves(saves_key, op, count)
  for i = 1, count do
    redis.call('ZREM', saves_key, op .. '#' .. i)
  end
end

-- Drops lapsed leases (with their saves: a save whose lease lapsed is treated like a released
-- one) and saves older than an hour. Returns the live leases by operation id.
local function normalize(resv_key, saves_key, now)
  local flat = redis.call('HGETALL', resv_key)
  local live = {}
  for i = 1, #flat, 2 do
    local op, lease = flat[i], decode_lease(flat[i + 1])
    if lease.expires <= now then
      redis.call('HDEL', resv_key, op)
      remove_saves(saves_key, op, lease.saves)
    else
      live[op] = lease
    end
  end
  redis.call('ZREMRANGEBYSCORE', saves_key, '-inf', now - HOUR_MS)
  return live
end

-- In-use totals, the sums of the live leases, and the number of saves in the window.
local function tally(inuse_key, saves_key, live)
  local vals = redis.call('HMGET', inuse_key, 'states', 'bytes')
  local t = {
    states = tonumber(vals[1]) or 0, bytes = tonumber(vals[2]) or 0,
    r_states = 0, r_bytes = 0, r_ops = 0, r_saves = 0,
    window = redis.call('ZCARD', saves_key),
  }
  for _, l in pairs(live) do
    t.r_states = t.r_states + l.states
    t.r_bytes = t.r_bytes + l.bytes
    t.r_ops = t.r_ops + l.ops
    t.r_saves = t.r_saves + l.saves
  end
  return t
end


-- The run id of this Redis process: new on every start, different on every node.
local function server_id()
  local info = redis.call('INFO', 'server')
  local id = string.match(info, 'run_id:(%x+)')
  if not id then
    error('snapgate-quota: no run_id in INFO server')
  end
  return id
end

local function is_fresh(owner_key)
  return redis.call('GET', owner_key) == server_id()
end

-- The error reserve, check, usage and add_in_use answer for a tenant that must be rebuilt first.
local function stale()
  return redis.error_reply('SGSTALE tenant quota must be rebuilt from the database')
end

-- An end (commit, release, free) changed the tenant: a rebuild that read the database before
-- this end and writes after it would miscount it, so it must start again.
local function ended_change(owner_key, rebuild_key)
  if not is_fresh(owner_key) then
    redis.call('DEL', rebuild_key)
  end
end

-- The reserve decision over a tally: nil when `want` fits `limit`, else the refusal reply
-- ({1, resource, limit, in_use, reserved, requested} or {2, retry_after_secs}; see
-- reserve.lua). `nth_save(i)` is the time (ms) of the i-th oldest save in the window.
-- Only resources the operation asks for are checked: a restore (no new state) still runs for
-- a tenant whose limit was lowered below what it already holds.
local function decide(t, want, limit, now, nth_save)
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
      local secs = math.ceil((nth_save(must_leave) + HOUR_MS - now) / 1000)
      if secs < 1 then secs = 1 end
      return { 2, secs }
    end
  end
  return nil
end
