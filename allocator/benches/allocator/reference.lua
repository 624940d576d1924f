-- reference.lua: the minimal allocator of the allocator bench (issue #13 goal 4), not
-- the product. The least a confirm on this Redis can do: check the family and the unit,
-- write both, append one event. No phases, no intentions, no stored answers (so no
-- idempotency: a repeated request is decided again), no view in the reply.
--
-- KEYS: 1 the family's hash, 2 taken (hash unit -> family), 3 events (stream)
-- ARGV: 1 family id, 2 unit
-- Checks: the family exists (unknown_family) and holds no unit (already_has_unit); no
--   family holds the unit (unit_taken).
-- Writes: family.unit, taken[unit] = family, one stream entry (auto ID).
-- Replies: 1 accepted, or {'err', code}.
local family = redis.call('HMGET', KEYS[1], 'rank', 'unit')
if not family[1] then
  return { 'err', 'unknown_family' }
end
if family[2] then
  return { 'err', 'already_has_unit' }
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return { 'err', 'unit_taken' }
end
redis.call('HSET', KEYS[1], 'unit', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'family', ARGV[1], 'unit', ARGV[2])
return 1
