-- close_session.lua: one auto-confirm step at a session's deadline (hub
-- Selection::close_session_step). Scripts run one at a time, so several gateways
-- calling at once decide each family exactly once.
--
-- KEYS: 1 meta, 2 seq, 3 events, 4 taken, 5 closed, 6 sessions, 7 cursor,
--   8.. fam:<family> for a window of the session's families from position ARGV[3] on
--   (a few chunks' worth, so a step costs the chunk, not the session's size)
-- ARGV: 1 now (-1 = TIME), 2 session id, 3 c0: position of the first family passed,
--   4 max families to decide, 5.. the family ids matching KEYS 8..
-- The cursor (session -> position) marks where pending families start: families
--   before it have an outcome or have moved to another session, which cannot undo.
-- Checks: unknown_batch, unknown_session, too_early (now < deadline); a closed session
--   answers {0, closed}. The window must hold the cursor ('stale' otherwise).
-- Decides, in rank order, up to `max` pending families (no outcome, current session is
--   this one): no formal declaration -> no_unit absent; else the first intention no
--   family holds (nor one chosen earlier in this step) -> selected automatic; an empty
--   list -> no_unit no_intentions; else no_unit no_free_intention. If the window ends before the session does, the cursor
--   moves to the window's end (the caller goes on with the next window); if no pending
--   family remains in the session: session_closed.
-- Writes: all decisions after all checks; the cursor; closed[session] = seq.
-- Replies: {'ok', decided, closed(0|1)[, 1 when the window ran out first]} or {'err', code}
local K_META, K_SEQ, K_EVENTS, K_TAKEN = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_CLOSED, K_SESSIONS, K_CURSOR = KEYS[5], KEYS[6], KEYS[7]
local FIRST_FAM = 8
local NOW, NOW_S = server_now(ARGV[1])
local SID, C0, MAX = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('EXISTS', K_META) == 0 then
  return { 'err', 'unknown_batch' }
end
local info = redis.call('HGET', K_SESSIONS, SID)
if not info then
  return { 'err', 'unknown_session' }
end
info = cjson.decode(info)
if NOW < info.deadline then
  return { 'err', 'too_early' }
end
if redis.call('HEXISTS', K_CLOSED, SID) == 1 then
  return { 'ok', 0, 1 }
end
local cursor = tonumber(redis.call('HGET', K_CURSOR, SID) or '0')
local WINDOW_END = C0 + (#KEYS - FIRST_FAM + 1)
if cursor < C0 or cursor > WINDOW_END or WINDOW_END > info.size then
  return { 'err', 'stale' }
end

local decisions = {}
local chosen = {}
local next_pending = nil
local pos = cursor
while pos < WINDOW_END do
  local k = KEYS[FIRST_FAM + pos - C0]
  local f = redis.call('HMGET', k, 'oresult', 'cur', 'fdecl', 'intent')
  if not f[1] and f[2] == SID then
    if #decisions >= MAX then
      next_pending = pos
      break
    end
    local d = { key = k, family = ARGV[5 + pos - C0] }
    if not f[3] then
      d.reason = 'absent'
    else
      local intent = decode_list(f[4])
      for _, u in ipairs(intent) do
        if not chosen[u] and redis.call('HEXISTS', K_TAKEN, u) == 0 then
          d.unit = u
          chosen[u] = true
          break
        end
      end
      if #intent == 0 then
        d.reason = 'no_intentions'
      elseif not d.unit then
        d.reason = 'no_free_intention'
      end
    end
    decisions[#decisions + 1] = d
  end
  pos = pos + 1
end

for _, d in ipairs(decisions) do
  if d.unit then
    write_selected(K_SEQ, K_EVENTS, K_TAKEN, d.key, d.family, d.unit, 'automatic', NOW_S)
  else
    write_no_unit(K_SEQ, K_EVENTS, d.key, d.family, d.reason, NOW_S)
  end
end
if next_pending then
  redis.call('HSET', K_CURSOR, SID, next_pending)
  return { 'ok', #decisions, 0 }
end
if WINDOW_END < info.size then
  redis.call('HSET', K_CURSOR, SID, WINDOW_END)
  return { 'ok', #decisions, 0, 1 }
end
redis.call('HSET', K_CURSOR, SID, info.size)
local seq = emit(K_SEQ, K_EVENTS, NOW_S, '{"kind":"session_closed","session":' .. jstr(SID) .. '}')
redis.call('HSET', K_CLOSED, SID, seq)
return { 'ok', #decisions, 1 }
