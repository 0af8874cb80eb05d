-- Drops a reservation. A released save leaves the hourly window too: a save that failed does
-- not count toward the rate (the rate protects hosts from work done, not attempts).
-- KEYS: resv, saves, op-marker, owner, rebuild    ARGV: op, marker_ttl_ms
-- Reply: 0 released, 1 already ended, 2 no reservation
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 1
end
ended_change(KEYS[4], KEYS[5])
redis.call('SET', KEYS[3], 'released', 'PX', ARGV[2])
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return 2
end
local lease = decode_lease(raw)
redis.call('HDEL', KEYS[1], ARGV[1])
remove_saves(KEYS[2], ARGV[1], lease.saves)
return 0
