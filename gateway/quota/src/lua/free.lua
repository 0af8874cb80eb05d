-- A delete finished: subtract from in-use, never below zero (a rebuild repairs any drift).
-- KEYS: inuse, freed-marker, owner, rebuild    ARGV: states, bytes, marker_ttl_ms
-- Reply: 0 freed, 1 already freed
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 1
end
ended_change(KEYS[3], KEYS[4])
redis.call('SET', KEYS[2], 'freed', 'PX', ARGV[3])
local vals = redis.call('HMGET', KEYS[1], 'states', 'bytes')
local states = math.max(0, (tonumber(vals[1]) or 0) - tonumber(ARGV[1]))
local bytes = math.max(0, (tonumber(vals[2]) or 0) - tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'states', int(states), 'bytes', int(bytes))
return 0
