-- load_begin.lua: the first call of a chunked load (see load_batch.lua).
--
-- KEYS: 1 meta, 2 seq, 3 loading (the load's lock: its token)
-- ARGV: 1 token (random, this load's), 2 lock lifetime in ms
-- Checks: the batch id is not in use, and no other load of it is under way (conflict).
-- Writes: loading = token, expiring after ARGV[2] ms (each later call renews it), so a
--   load whose loader died frees the id by itself.
-- Replies: {'ok'} or {'err', 'conflict'}
local K_META, K_SEQ, K_LOADING = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', K_META) == 1 or redis.call('EXISTS', K_SEQ) == 1 then
  return { 'err', 'conflict' }
end
local holder = redis.call('GET', K_LOADING)
if holder and holder ~= ARGV[1] then
  return { 'err', 'conflict' }
end
redis.call('SET', K_LOADING, ARGV[1], 'PX', ARGV[2])
return { 'ok' }
