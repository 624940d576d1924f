-- apply_supplementary.lua: 补选申请 (hub Action::ApplySupplementary).
--
-- KEYS, common checks and replies: see act.lua.
-- ARGV: none of its own.
-- Checks (no outcome check: this action is for families with a result): the outcome
--   is no_unit (not_eligible_for_supplementary); not yet applied (already_applied);
--   now within [supp_from, supp_until), precomputed at load from the formal sessions
--   (window_closed).
-- Writes: fam applied = now, event `applied_supplementary`.
if F.oresult ~= 'no_unit' then
  return refuse('not_eligible_for_supplementary')
end
if F.applied then
  return refuse('already_applied')
end
if not F.supp_from or F.supp_from == ''
  or NOW < tonumber(F.supp_from) or NOW >= tonumber(F.supp_until) then
  return refuse('window_closed')
end

redis.call('HSET', K_FAM, 'applied', NOW_S)
emit(K_SEQ, K_EVENTS, NOW_S, '{"kind":"applied_supplementary","family":' .. jstr(FAMILY) .. '}')
return done()
