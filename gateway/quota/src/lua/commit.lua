-- Moves a reservation's states and bytes into in-use; its saves stay in the hourly window.
-- KEYS: inuse, resv, op-marker, owner, rebuild    ARGV: op, actual_bytes ('' = as reserved), marker_ttl_ms
-- Reply: 0 committed, 1 already ended (retry), 2 no reservation (nothing counted)
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 1
end
ended_change(KEYS[4], KEYS[5])
-- The marker makes retries no-ops and stops a late reserve retry from reserving again.
redis.call('SET', KEYS[3], 'committed', 'PX', ARGV[3])
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  return 2
end
-- A lapsed lease still present is honoured: the state exists, so counting it is the truth.
local lease = decode_lease(raw)
local bytes = lease.bytes
if ARGV[2] ~= '' then
  bytes = tonumber(ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'states', int(lease.states))
redis.call('HINCRBY', KEYS[1], 'bytes', int(bytes))
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
