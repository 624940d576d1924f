-- backup_restore.lua: one batch's keys put back from a backup, for `xuanfang restore`.
--
-- KEYS: 1 meta (routes the script to the batch's slot; every key restored is in it)
-- ARGV: 1 glob matching every key of the batch (`<ns>{b:<batch>}:*`, escaped),
--       2 '1' to replace a batch that exists, else '0',
--       3.. key, DUMP payload, key, payload, ...
-- Checks: unless ARGV[2] is '1', no key of the batch exists.
-- Writes: RESTOREs each key (REPLACE when forced); when forced, then deletes the keys of
--         the batch that the backup does not hold. A payload this Redis cannot read fails
--         the first RESTORE, before anything is written.
-- Replies: {'ok', keys restored} or {'err', 'not_empty', keys found}
local existing = redis.call('KEYS', ARGV[1])
local force = ARGV[2] == '1'
if #existing > 0 and not force then
  return { 'err', 'not_empty', tostring(#existing) }
end
local restored = {}
local n = 0
for i = 3, #ARGV, 2 do
  if force then
    redis.call('RESTORE', ARGV[i], 0, ARGV[i + 1], 'REPLACE')
  else
    redis.call('RESTORE', ARGV[i], 0, ARGV[i + 1])
  end
  restored[ARGV[i]] = true
  n = n + 1
end
for _, k in ipairs(existing) do
  if not restored[k] then
    redis.call('DEL', k)
  end
end
return { 'ok', tostring(n) }
