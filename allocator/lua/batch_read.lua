-- batch_read.lua: the batch's statics at one generation, read atomically (no writes).
--
-- KEYS: 1 meta, 2 loaded, 3 supp
-- ARGV: none
-- Replies: {'ok', gen, epoch, base JSON, supplementary session JSON, ...} or
--          {'err', 'unknown_batch'}. The base is meta's `batch` where a store of before
--          the supp list has one (it holds the sessions published then), else the
--          loaded batch; the batch is the base with the sessions appended.
local m = redis.call('HMGET', KEYS[1], 'gen', 'epoch', 'batch')
if not m[1] then
  return { 'err', 'unknown_batch' }
end
local out = { 'ok', m[1], m[2], m[3] or redis.call('GET', KEYS[2]) or '' }
for _, s in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  out[#out + 1] = s
end
return out
