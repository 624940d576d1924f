-- load_batch.lua: publishes a new batch (hub EventKind::BatchLoaded, seq 1), the last
-- call of a chunked load: load_begin.lua takes the id's lock, load_part.lua writes the
-- units (staged), the batch's JSON (staged) and family hashes in slices, each call a few
-- ms at most, and this call makes the whole batch visible at once: until meta exists
-- every script answers unknown_batch, so readers see either no batch or all of it. It
-- copies nothing of the batch's size: the staged keys are renamed into place (O(1)).
--
-- KEYS: 1 meta, 2 seq, 3 events, 4 units, 5 sessions, 6 loading, 7 staged units,
--   8 loaded, 9 staged batch JSON (loaded~<token>)
-- ARGV: 1 now (-1 = TIME), 2 the staged JSON's length in bytes, 3 token,
--   4 preselect_start, 5 preselect_end ('' if none),
--   6.. sessions: id, deadline, size, id, deadline, size, ...
-- Checks: the lock still holds this token and the batch is not live; the whole JSON is
--   staged (conflict).
-- Writes: meta (gen 1, epoch = now, pre-selection times, load = token), seq = 1, the
--   `batch_loaded` entry 1-0 naming the loaded key (field `b`, see keys.rs), loaded
--   (the staged JSON, renamed), units (the staged hash, renamed), sessions
--   (id -> {deadline, size}); the lock is released.
-- Replies: {'ok', epoch} or {'err', 'conflict'}
local K_META, K_SEQ, K_EVENTS, K_UNITS, K_SESSIONS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_LOADING, K_STAGED, K_LOADED, K_STAGED_JSON = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local NOW, NOW_S = server_now(ARGV[1])
local TOKEN = ARGV[3]
if redis.call('EXISTS', K_META) == 1 or redis.call('EXISTS', K_SEQ) == 1
    or redis.call('GET', K_LOADING) ~= TOKEN
    or redis.call('STRLEN', K_STAGED_JSON) ~= tonumber(ARGV[2]) then
  return { 'err', 'conflict' }
end

redis.call('RENAME', K_STAGED_JSON, K_LOADED)
redis.call('PERSIST', K_LOADED)
redis.call('HSET', K_META, 'gen', 1, 'epoch', NOW_S,
  'preselect_start', ARGV[4], 'preselect_end', ARGV[5], 'load', TOKEN)
redis.call('SET', K_SEQ, 1)
redis.call('XADD', K_EVENTS, '1-0', 'at', NOW_S, 'b', K_LOADED)
if redis.call('EXISTS', K_STAGED) == 1 then
  redis.call('RENAME', K_STAGED, K_UNITS)
  redis.call('PERSIST', K_UNITS)
end
for i = 6, #ARGV, 3 do
  redis.call('HSET', K_SESSIONS, ARGV[i], '{"deadline":' .. ARGV[i + 1] .. ',"size":' .. ARGV[i + 2] .. '}')
end
redis.call('DEL', K_LOADING)
return { 'ok', NOW_S }
