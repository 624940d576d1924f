-- load_part.lua: one slice of a chunked load (see load_batch.lua): units into the
-- load's staging hash, a slice of the batch's JSON into its staging string, or family
-- hashes. Nothing here is visible to readers: every script answers unknown_batch until
-- load_batch.lua writes meta, and family hashes carry the load's token, which readers
-- compare with meta's.
--
-- KEYS: 1 meta, 2 loading, 3 the staging key of the slice (units: units~<token>, json:
--   loaded~<token>; families: not used), 4.. fam:<family> (families)
-- ARGV: 1 token, 2 lock lifetime in ms, 3 'units' | 'json' | 'families', then
--   units: id, layout, id, layout, ...
--   json: the slice's byte offset, the slice
--   families: per family (matching KEYS 4..) FAMILY_FIELDS values: id, rank, formal
--   session, start, deadline, kind, layouts JSON, supp_from, supp_until
-- Checks: the lock still holds this token and the batch is not live (conflict); a JSON
--   slice follows the staged bytes without a gap (conflict).
-- Writes: the units into the staging hash, or the slice at its offset (SETRANGE: a
--   call repeated writes the same bytes again), both expiring with the lock; or each
--   family's hash afresh (a failed earlier attempt may have left one).
-- Replies: {'ok'} or {'err', 'conflict'}
local K_META, K_LOADING, K_STAGED = KEYS[1], KEYS[2], KEYS[3]
local TOKEN, TTL = ARGV[1], ARGV[2]
local FAMILY_FIELDS = 9
if redis.call('EXISTS', K_META) == 1 or redis.call('GET', K_LOADING) ~= TOKEN then
  return { 'err', 'conflict' }
end
redis.call('PEXPIRE', K_LOADING, TTL)
if ARGV[3] == 'units' then
  for i = 4, #ARGV, 2 do
    redis.call('HSET', K_STAGED, ARGV[i], ARGV[i + 1])
  end
  redis.call('PEXPIRE', K_STAGED, TTL)
elseif ARGV[3] == 'json' then
  local offset = tonumber(ARGV[4])
  if redis.call('STRLEN', K_STAGED) < offset then
    return { 'err', 'conflict' }
  end
  redis.call('SETRANGE', K_STAGED, offset, ARGV[5])
  redis.call('PEXPIRE', K_STAGED, TTL)
else
  for i = 4, #KEYS do
    local a = 4 + (i - 4) * FAMILY_FIELDS
    redis.call('DEL', KEYS[i])
    redis.call('HSET', KEYS[i], 'id', ARGV[a], 'rank', ARGV[a + 1], 'session', ARGV[a + 2],
      'cur', ARGV[a + 2], 'start', ARGV[a + 3], 'deadline', ARGV[a + 4], 'skind', ARGV[a + 5],
      'layouts', ARGV[a + 6], 'supp_from', ARGV[a + 7], 'supp_until', ARGV[a + 8],
      'cart', '[]', 'intent', '[]', 'load', TOKEN)
  end
end
return { 'ok' }
