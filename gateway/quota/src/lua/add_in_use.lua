-- Adds states and bytes the database already records for the tenant (an instance's states moved
-- to it). On a tenant not fresh here nothing is added: its rebuild reads the database, which
-- holds the move already, so adding too would count it twice. Any rebuild already under way
-- may have read the database before the move: its token goes, so it reads again.
-- KEYS: inuse, op-marker, owner, rebuild    ARGV: states, bytes, marker_ttl_ms
-- Reply: 0 added, 1 already added, or the error SGSTALE (the tenant must be rebuilt)
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 1
end
if not is_fresh(KEYS[3]) then
  redis.call('DEL', KEYS[4])
  return stale()
end
redis.call('SET', KEYS[2], 'committed', 'PX', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'states', int(tonumber(ARGV[1])))
redis.call('HINCRBY', KEYS[1], 'bytes', int(tonumber(ARGV[2])))
return 0
