-- signing_read.lua: what the engine decides a signing change against, read atomically
-- (no writes). Signing uses optimistic concurrency (docs/signing.md, Storage): hub
-- decides in Rust on this snapshot, then signing_append.lua writes only if the family's
-- head seq is still the one read here.
--
-- KEYS: 1 meta, 2 signing:replies, 3 signing:fam:<family>, 4 signing:heads,
--       5 fam:<family> (the selection's family hash, for opening)
-- ARGV: 1 now (-1 = TIME), 2 family id, 3 reply field ("<actor>\n<req_id>", '' = none)
-- Checks: unknown batch.
-- Replies: {'ok', now, prior reply or '', head seq (0 = never opened),
--           the family's signing entries as XRANGE gives them,
--           the selection's family hash as [field, value, ...]}
--          {'err', 'unknown_batch'}
local K_META, K_REPLIES, K_FSTREAM, K_HEADS, K_FAM = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local NOW, NOW_S = server_now(ARGV[1])
local FAMILY, FIELD = ARGV[2], ARGV[3]
if redis.call('EXISTS', K_META) == 0 then
  return { 'err', 'unknown_batch' }
end
local prior = ''
if FIELD ~= '' then
  prior = redis.call('HGET', K_REPLIES, FIELD) or ''
end
local head = redis.call('HGET', K_HEADS, FAMILY) or '0'
return { 'ok', NOW_S, prior, head, redis.call('XRANGE', K_FSTREAM, '-', '+'),
  redis.call('HGETALL', K_FAM) }
