-- waive.lua: 主动放弃 (hub Action::Waive).
--
-- KEYS, common checks and replies: see act.lua.
-- ARGV: none of its own.
-- Checks: outcome; the family's window has not passed (window_closed).
-- Writes: fam outcome waived, event `waived`.
local refused = outcome_refusal()
if refused then
  return refused
end
if PHASE == 'done' then
  return refuse('window_closed')
end

emit(K_SEQ, K_EVENTS, NOW_S, '{"kind":"waived","family":' .. jstr(FAMILY) .. '}')
redis.call('HSET', K_FAM, 'oresult', 'waived', 'outcome',
  '{"result":"waived","at":' .. NOW_S .. '}')
return done()
