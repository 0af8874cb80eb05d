-- Starts a rebuild of one tenant: returns the token the rebuild must present when it writes
-- (`rebuild.lua`), or false when the tenant is already fresh on this Redis process. Rebuilders
-- running at once share one token; the first to write wins, the others find the tenant fresh.
-- KEYS: owner, rebuild    ARGV: new token, token_ttl_ms
if is_fresh(KEYS[1]) then
  return false
end
redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
return redis.call('GET', KEYS[2])
