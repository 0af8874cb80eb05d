-- Usage of one tenant, after dropping lapsed leases and old saves.
-- KEYS: inuse, resv, saves, owner
-- Reply: {states, bytes, reserved_states, reserved_bytes, reserved_operations, reserved_saves, saves_in_window}
if not is_fresh(KEYS[4]) then
  return stale()
end
local live = normalize(KEYS[2], KEYS[3], now_ms())
local t = tally(KEYS[1], KEYS[3], live)
return { t.states, t.bytes, t.r_states, t.r_bytes, t.r_ops, t.r_saves, t.window }
