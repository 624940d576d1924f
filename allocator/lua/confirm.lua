-- confirm.lua: 确认正选 (hub Action::Confirm). Two families confirming one unit: the
-- first script to run wins, the second sees the unit in `taken`.
--
-- KEYS, common checks and replies: see act.lua.
-- ARGV: 4 unit
-- Checks: outcome; formal phase (window_closed); formal declaration
--   (declaration_required); unknown_unit; the unit is an intention (not_in_intentions);
--   no family holds it (unit_taken).
-- Writes: fam outcome, taken[unit] = holder, event `selected` (how = confirmed).
local UNIT = ARGV[4]
local refused = outcome_refusal()
if refused then
  return refused
end
if PHASE ~= 'formal' then
  return refuse('window_closed')
end
if not F.fdecl then
  return refuse('declaration_required')
end
if redis.call('HEXISTS', K_UNITS, UNIT) == 0 then
  return refuse('unknown_unit')
end
if not index_of(decode_list(F.intent), UNIT) then
  return refuse('not_in_intentions', UNIT)
end
if redis.call('HEXISTS', K_TAKEN, UNIT) == 1 then
  return refuse('unit_taken', UNIT)
end

write_selected(K_SEQ, K_EVENTS, K_TAKEN, K_FAM, FAMILY, UNIT, 'confirmed', NOW_S)
return done()
