-- set_list.lua: the whole list in a new order (hub Action::SetList).
--
-- KEYS, common checks and replies: see act.lua.
-- ARGV: 4 list ('cart' | 'intentions'), 5.. the units in order
-- Checks: outcome; list access; more than LIST_CAP (hub's, from the prelude) units:
--   invalid_list; then per unit in
--   order: a duplicate is invalid_list (with the unit); a unit not already in the list
--   obeys the rules of add (unknown_unit, not_eligible, unit_taken). Units already in
--   the list may stay even if taken since.
-- Writes: the new list and `list_changed`, unless the list is unchanged.
local LIST = ARGV[4]
local refused = outcome_refusal()
if refused then
  return refused
end
local current, denied = list_access(LIST)
if denied then
  return denied
end
local units = {}
for i = 5, #ARGV do
  units[#units + 1] = ARGV[i]
end
if #units > LIST_CAP then
  return refuse('invalid_list')
end
for i, u in ipairs(units) do
  for j = 1, i - 1 do
    if units[j] == u then
      return refuse('invalid_list', u)
    end
  end
  if not index_of(current, u) then
    local bad = addable(u)
    if bad then
      return bad
    end
  end
end

write_list(LIST, current, units)
return done()
