-- load_abort.lua: releases a chunked load's lock after a failed call, if it is still
-- this load's, so a retry need not wait for it to expire. What the load wrote stays
-- invisible (see load_part.lua) and a retry overwrites it.
--
-- KEYS: 1 loading, 2 staged units, 3 staged batch JSON
-- ARGV: 1 token
-- Replies: {'ok'}
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
return { 'ok' }
