-- Extends a live lease.
-- KEYS: resv, saves, op-marker    ARGV: op, lease_ms
-- Reply: 0 renewed, 1 operation already ended, 2 no live lease (unknown or lapsed)
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    return 1
  end
  return 2
end
local now = now_ms()
local lease = decode_lease(raw)
if lease.expires <= now then
  -- Lapsed: its units may already be counted as free by another decision; never revive it.
  redis.call('HDEL', KEYS[1], ARGV[1])
  remove_saves(KEYS[2], ARGV[1], lease.saves)
  return 2
end
lease.expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], encode_lease(lease))
return 0
