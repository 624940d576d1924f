-- sync.lua: 同步预选房源, intentions := cart (hub Action::Sync).
--
-- KEYS, common checks and replies: see act.lua.
-- ARGV: none of its own.
-- Checks: outcome; access to the intentions (formal phase, formal declaration).
-- Writes: intentions and `list_changed`, unless they already equal the cart.
local refused = outcome_refusal()
if refused then
  return refused
end
local current, denied = list_access('intentions')
if denied then
  return denied
end

write_list('intentions', current, decode_list(F.cart))
return done()
