-- family.lua: one family's state, read atomically (no writes).
--
-- KEYS: 1 meta, 2 closed, 3 fam:<family>, 4 seq
-- ARGV: 1 now (-1 = TIME)
-- Replies: {'ok', now, closed(0|1), gen, family hash as [field, value, ...], seq}
--          {'err', 'unknown_batch' | 'unknown_family'}
local K_META, K_CLOSED, K_FAM, K_SEQ = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local NOW, NOW_S = server_now(ARGV[1])
if redis.call('EXISTS', K_META) == 0 then
  return { 'err', 'unknown_batch' }
end
local f = redis.call('HMGET', K_FAM, 'cur', 'load')
local cur = f[1]
-- Another load's token: left by a failed load of this id (load_part.lua).
if not cur or f[2] ~= redis.call('HGET', K_META, 'load') then
  return { 'err', 'unknown_family' }
end
local closed = redis.call('HEXISTS', K_CLOSED, cur)
return { 'ok', NOW_S, closed, redis.call('HGET', K_META, 'gen'), redis.call('HGETALL', K_FAM),
  redis.call('GET', K_SEQ) or '0' }
