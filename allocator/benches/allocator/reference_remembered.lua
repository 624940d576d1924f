-- reference_remembered.lua: reference.lua plus the one thing the engine's contract adds
-- to every attempt, its stored answer: each answer goes into the family's ring of
-- recent answers exactly as act.lua stores it, and a repeated request gets it back.
-- Bench code, not the product: it tells the cost of idempotency apart from the rest of
-- the engine's work. REPLIES_KEPT comes from the engine's prelude.
--
-- KEYS: 1 the family's hash, 2 taken (hash unit -> family), 3 events (stream),
--       4 the family's answers (act.lua's ring)
-- ARGV: 1 family id, 2 unit, 3 req_id
-- Checks: a stored answer for req_id (returned as is); then as reference.lua.
-- Writes: as reference.lua, and every answer but unknown_family into the ring.
-- Replies: 1 accepted, or {'err', code}; a stored answer as its text.
local field = 'r' .. ARGV[3]
local ring = redis.call('HMGET', KEYS[4], field, '#')
if ring[1] then
  return ring[1]
end

local function remember(answer)
  local n = (tonumber(ring[2]) or 0) + 1
  local slot = '#' .. (n % REPLIES_KEPT)
  if n > REPLIES_KEPT then
    local old = redis.call('HGET', KEYS[4], slot)
    if old then
      redis.call('HDEL', KEYS[4], 'r' .. old)
    end
  end
  redis.call('HSET', KEYS[4], '#', n, slot, ARGV[3], field, answer)
end

local family = redis.call('HMGET', KEYS[1], 'rank', 'unit')
if not family[1] then
  return { 'err', 'unknown_family' }
end
if family[2] then
  remember('err\nalready_has_unit\n')
  return { 'err', 'already_has_unit' }
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  remember('err\nunit_taken\n' .. ARGV[2])
  return { 'err', 'unit_taken' }
end
redis.call('HSET', KEYS[1], 'unit', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'family', ARGV[1], 'unit', ARGV[2])
remember('ok')
return 1
