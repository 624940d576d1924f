-- declare.lua: 我已阅读并同意声明 (hub Action::Declare).
--
-- KEYS, common checks and replies: see act.lua.
-- ARGV: 4 stage ('preselection' | 'formal')
-- Checks: outcome; the phase must be the stage's phase (window_closed). Accepting
--   again is ok and changes nothing: the first acceptance time stands.
-- Writes: fam pdecl|fdecl = now; event `declared`. Entering a formal session (not a
--   supplementary one) also syncs: intentions := cart and `list_changed`, unless equal.
local STAGE = ARGV[4]
local refused = outcome_refusal()
if refused then
  return refused
end
local needed, field = 'formal', 'fdecl'
if STAGE == 'preselection' then
  needed, field = 'preselection', 'pdecl'
end
if PHASE ~= needed then
  return refuse('window_closed')
end
if F[field] then
  return done()
end

redis.call('HSET', K_FAM, field, NOW_S)
emit(K_SEQ, K_EVENTS, NOW_S, '{"kind":"declared","family":' .. jstr(FAMILY)
  .. ',"stage":"' .. STAGE .. '"}')
if STAGE == 'formal' and F.skind ~= 'supplementary' then
  write_list('intentions', decode_list(F.intent), decode_list(F.cart))
end
return done()
