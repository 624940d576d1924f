-- publish_supplementary.lua: an operator's supplementary session (hub
-- Selection::decide_publish, then EventKind::SupplementaryPublished).
--
-- KEYS: 1 meta, 2 seq, 3 events, 4 sessions, 5 supp, 6.. fam:<family> in the session's
--   order
-- ARGV: 1 now (-1 = TIME), 2 the batch generation the engine checked the session
--   against, 3 the session as JSON, 4 session id, 5 kind, 6 window_ms, 7 start,
--   8 deadline, 9 the earliest start hub allows for these families (its applications
--   close then), 10 1 when the window overlaps a formal session (hub
--   supplementary::overlaps_formal), 11.. the family ids
-- Checks (hub Selection::decide_publish, in its order): unknown_batch; the generation is
--   current ('stale': the engine reloads and retries); kind supplementary and window > 0
--   (invalid_session); a new session id (conflict); per family in order: known
--   (unknown_family), applied with no unit and no supplementary session yet
--   (not_eligible_for_supplementary), ranks increasing (invalid_list); then timing: start
--   not before server time, not before ARGV 9, no overlap (invalid_session).
-- Writes: event `supplementary_published`; sessions[id]; each family's current session
--   becomes this one, with its outcome, formal declaration and intentions cleared;
--   the session's JSON appended to supp (the batch is loaded + supp: no call copies the
--   whole batch); meta gen + 1.
-- Replies: {'ok', gen} or {'err', code}
local K_META, K_SEQ, K_EVENTS, K_SESSIONS, K_SUPP = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local FIRST_FAM = 6
local NOW, NOW_S = server_now(ARGV[1])
local SID, KIND, WINDOW = ARGV[4], ARGV[5], tonumber(ARGV[6])

local gen = redis.call('HGET', K_META, 'gen')
if not gen then
  return { 'err', 'unknown_batch' }
end
if gen ~= ARGV[2] then
  return { 'err', 'stale' }
end
if KIND ~= 'supplementary' or WINDOW <= 0 then
  return { 'err', 'invalid_session' }
end
if redis.call('HEXISTS', K_SESSIONS, SID) == 1 then
  return { 'err', 'conflict' }
end
local last_rank = 0
for i = FIRST_FAM, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'rank', 'applied', 'supp', 'oresult')
  if not f[1] then
    return { 'err', 'unknown_family' }
  end
  if not f[2] or f[3] or f[4] ~= 'no_unit' then
    return { 'err', 'not_eligible_for_supplementary' }
  end
  local rank = tonumber(f[1])
  if rank <= last_rank then
    return { 'err', 'invalid_list' }
  end
  last_rank = rank
end
local START = tonumber(ARGV[7])
if START < NOW or START < tonumber(ARGV[9]) or ARGV[10] == '1' then
  return { 'err', 'invalid_session' }
end

emit(K_SEQ, K_EVENTS, NOW_S, '{"kind":"supplementary_published","session":' .. ARGV[3] .. '}')
redis.call('HSET', K_SESSIONS, SID,
  '{"deadline":' .. ARGV[8] .. ',"size":' .. (#KEYS - FIRST_FAM + 1) .. '}')
for i = FIRST_FAM, #KEYS do
  redis.call('HDEL', KEYS[i], 'oresult', 'ounit', 'outcome', 'fdecl')
  redis.call('HSET', KEYS[i], 'cur', SID, 'supp', SID, 'start', ARGV[7],
    'deadline', ARGV[8], 'skind', 'supplementary', 'intent', '[]')
end
redis.call('RPUSH', K_SUPP, ARGV[3])
local new_gen = redis.call('HINCRBY', K_META, 'gen', 1)
return { 'ok', new_gen }
