-- edit.lua: one edit of the cart or the intentions (hub Action::Edit).
--
-- KEYS, common checks and replies: see act.lua.
-- ARGV: 4 list ('cart' | 'intentions'), 5 edit ('add' | 'remove' | 'up' | 'down' |
--   'top'), 6 unit
-- Checks: outcome; list access (window_closed, declaration_required); add:
--   already_in_list, unknown_unit, not_eligible, unit_taken, list_full; others:
--   not_in_list.
-- Writes: the new list and `list_changed`, unless the list is unchanged.
local LIST, EDIT, UNIT = ARGV[4], ARGV[5], ARGV[6]
local refused = outcome_refusal()
if refused then
  return refused
end
local current, denied = list_access(LIST)
if denied then
  return denied
end
local units = copy_list(current)
local pos = index_of(units, UNIT)
if EDIT == 'add' then
  if pos then
    return refuse('already_in_list', UNIT)
  end
  local bad = addable(UNIT)
  if bad then
    return bad
  end
  if #units >= LIST_CAP then
    return refuse('list_full')
  end
  table.insert(units, UNIT)
else
  if not pos then
    return refuse('not_in_list', UNIT)
  end
  if EDIT == 'remove' then
    table.remove(units, pos)
  elseif EDIT == 'up' then
    if pos > 1 then
      units[pos - 1], units[pos] = units[pos], units[pos - 1]
    end
  elseif EDIT == 'down' then
    if pos < #units then
      units[pos], units[pos + 1] = units[pos + 1], units[pos]
    end
  elseif EDIT == 'top' then
    local u = table.remove(units, pos)
    table.insert(units, 1, u)
  end
end

write_list(LIST, current, units)
return done()
