-- signing_append.lua: compare-and-append of one signing decision (hub decided it in
-- Rust against a snapshot read by signing_read.lua). Atomic per family: it writes only
-- if the family's head seq is still the one the decision was made on, so two gateways
-- deciding on one family at once cannot both win; the loser reads again and decides
-- again. The batch-wide facts a family snapshot cannot see are checked here.
--
-- KEYS: 1 meta, 2 signing:seq, 3 signing (the batch's signing stream),
--       4 signing:fam:<family>, 5 signing:heads, 6 signing:orders, 7 signing:faces,
--       8 signing:replies, 9 fam:<family> (the selection's family hash)
-- ARGV: 1 family id, 2 expected head seq, 3 at (ms: the snapshot's server time),
--       4 reply field ("<actor>\n<req_id>", '' = none), 5 reply to store ('' = none),
--       6 unit the family must hold ('' = not an opening), 7 number of events n,
--       then three per event i (ARGV[5+3i], ARGV[6+3i], ARGV[7+3i]): the event JSON
--       (hub SigningEvent, card number and phone sealed), the face session it starts
--       or '', the order number it gives or ''.
-- Checks, in order: unknown_batch; a reply already stored under the field ->
--   {'replied'} (the caller reads it back); head seq changed -> {'conflict'} (retry);
--   for an opening, the selection outcome is `selected` for that unit (not_selected);
--   every face session and order number is new in the batch (conflict).
-- Writes: per event the next batch seq (INCR signing:seq), XADD to the batch stream
--   (ID <seq>-0, fields f, at, e) and to the family's stream (ID <seq>-0, fields at,
--   e); heads[family] = last seq; faces[session] / orders[number] = family;
--   replies[field] = reply. A refusal by these checks is stored under the field as
--   'err\n{"code":...}' when a field is given.
-- Replies: {'ok', last seq of the family} | {'replied'} | {'conflict'} | {'err', code}
local K_META, K_SEQ, K_STREAM, K_FSTREAM = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_HEADS, K_ORDERS, K_FACES, K_REPLIES, K_FAM = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local FAMILY, EXPECTED, AT = ARGV[1], ARGV[2], ARGV[3]
local FIELD, REPLY, UNIT = ARGV[4], ARGV[5], ARGV[6]
local N = tonumber(ARGV[7])

if redis.call('EXISTS', K_META) == 0 then
  return { 'err', 'unknown_batch' }
end
if FIELD ~= '' and redis.call('HEXISTS', K_REPLIES, FIELD) == 1 then
  return { 'replied' }
end
if (redis.call('HGET', K_HEADS, FAMILY) or '0') ~= EXPECTED then
  return { 'conflict' }
end

local function refuse(code)
  if FIELD ~= '' then
    redis.call('HSET', K_REPLIES, FIELD, 'err\n{"code":"' .. code .. '"}')
  end
  return { 'err', code }
end

if UNIT ~= '' then
  local f = redis.call('HMGET', K_FAM, 'oresult', 'ounit')
  if f[1] ~= 'selected' or f[2] ~= UNIT then
    return refuse('not_selected')
  end
end
for i = 1, N do
  local face, order = ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  if face ~= '' and redis.call('HEXISTS', K_FACES, face) == 1 then
    return refuse('conflict')
  end
  if order ~= '' and redis.call('HEXISTS', K_ORDERS, order) == 1 then
    return refuse('conflict')
  end
end

local last = tonumber(EXPECTED)
for i = 1, N do
  local e, face, order = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local seq = redis.call('INCR', K_SEQ)
  redis.call('XADD', K_STREAM, seq .. '-0', 'f', FAMILY, 'at', AT, 'e', e)
  redis.call('XADD', K_FSTREAM, seq .. '-0', 'at', AT, 'e', e)
  if face ~= '' then
    redis.call('HSET', K_FACES, face, FAMILY)
  end
  if order ~= '' then
    redis.call('HSET', K_ORDERS, order, FAMILY)
  end
  last = seq
end
if N > 0 then
  redis.call('HSET', K_HEADS, FAMILY, last)
end
if FIELD ~= '' and REPLY ~= '' then
  redis.call('HSET', K_REPLIES, FIELD, REPLY)
end
return { 'ok', last }
