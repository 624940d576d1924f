-- board.lua: the public board at one seq, read atomically (no writes).
--
-- KEYS: 1 meta, 2 seq, 3 taken, 4 closed
-- ARGV: none
-- Replies: {'ok', seq, epoch, gen, taken as [unit, holder JSON, ...],
--           closed as [session, seq, ...]} or {'err', 'unknown_batch'}
local K_META, K_SEQ, K_TAKEN, K_CLOSED = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local m = redis.call('HMGET', K_META, 'epoch', 'gen')
if not m[1] then
  return { 'err', 'unknown_batch' }
end
return { 'ok', redis.call('GET', K_SEQ), m[1], m[2], redis.call('HGETALL', K_TAKEN),
  redis.call('HGETALL', K_CLOSED) }
