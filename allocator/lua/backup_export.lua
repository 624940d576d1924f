-- backup_export.lua: every key of one batch, read atomically, for `xuanfang export`.
--
-- KEYS: 1 meta, 2 seq, 3 signing:seq (they route the script to the batch's slot; the
--       batch's other keys are found with ARGV[1], all in the same slot)
-- ARGV: 1 glob matching every key of the batch (`<ns>{b:<batch>}:*`, escaped)
-- Checks: the batch exists.
-- Writes: nothing.
-- Replies: {'ok', epoch, seq, signing_seq, key, DUMP payload, key, payload, ...}
--          (keys sorted) or {'err', 'unknown_batch'}
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return { 'err', 'unknown_batch' }
end
local out = { 'ok', epoch, redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '0' }
local keys = redis.call('KEYS', ARGV[1])
table.sort(keys)
for _, k in ipairs(keys) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('DUMP', k)
end
return out
