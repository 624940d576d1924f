-- act.lua: the common part of every family action (prepended after lib.lua).
--
-- KEYS: 1 meta, 2 seq, 3 events, 4 taken, 5 units, 6 closed, 7 rep:<family>,
--       8 fam:<family>
-- ARGV: 1 now (-1 = TIME), 2 family id, 3 req_id, 4.. the action's own arguments
-- Checks, in the order of hub `Selection::decide`: unknown batch, a reply already given
-- to this req_id (replayed as is; an ok replays as ok + the view of now), unknown
-- family, then the phase; `outcome_refusal` answers a family that already has a result.
-- Replies: {'ok', now, closed(0|1), gen, family hash as [field, value, ...], seq}
--          {'err', code, unit or ''}
-- Every answer but unknown_batch and unknown_family is remembered in `rep:<family>`,
-- the family's most recent REPLIES_KEPT (put first by the engine) in a ring:
-- 'r' .. req_id -> the answer ('ok' | 'err\n<code>\n<unit>'), '#' -> answers stored so
-- far (n), '#' .. (n % REPLIES_KEPT) -> the req_id in that slot; reusing a slot drops
-- the answer of the req_id it held, which is then decided afresh if sent again.

local K_META, K_SEQ, K_EVENTS, K_TAKEN = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_UNITS, K_CLOSED, K_REPLIES, K_FAM = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local NOW, NOW_S = server_now(ARGV[1])
local FAMILY, REQ = ARGV[2], ARGV[3]
local REPLY_FIELD = 'r' .. REQ

-- Meta, read once: gen (absent: no such batch; only publish_supplementary changes it),
-- the pre-selection times and the load's token.
local META = redis.call('HMGET', K_META, 'gen', 'preselect_start', 'preselect_end', 'load')
if not META[1] then
  return { 'err', 'unknown_batch', '' }
end

-- The family's view as of now and of the last event (seq: clients order views by it);
-- `cur` when the caller has it (no action changes it).
local function view_reply(cur)
  cur = cur or redis.call('HGET', K_FAM, 'cur')
  local closed = 0
  if cur and redis.call('HEXISTS', K_CLOSED, cur) == 1 then
    closed = 1
  end
  return { 'ok', NOW_S, closed, META[1], redis.call('HGETALL', K_FAM),
    redis.call('GET', K_SEQ) or '0' }
end

-- This request's stored answer, if any, and how many answers the ring has taken: one
-- read, since every call needs the first and every decided one the second.
local PRIOR, STORED
do
  local r = redis.call('HMGET', K_REPLIES, REPLY_FIELD, '#')
  PRIOR, STORED = r[1], tonumber(r[2]) or 0
end

-- Stores this request's answer in the family's ring of recent answers, in one write
-- (a lone write is also propagated without MULTI/EXEC). Until the ring has gone round
-- once, the next slot has never been used, so only then is it read.
local function remember(answer)
  local n = STORED + 1
  local slot = '#' .. (n % REPLIES_KEPT)
  if n > REPLIES_KEPT then
    local old = redis.call('HGET', K_REPLIES, slot)
    if old then
      redis.call('HDEL', K_REPLIES, 'r' .. old)
    end
  end
  redis.call('HSET', K_REPLIES, '#', n, slot, REQ, REPLY_FIELD, answer)
end

local function refuse(code, unit)
  unit = unit or ''
  remember('err\n' .. code .. '\n' .. unit)
  return { 'err', code, unit }
end

-- The family hash as a table, read below (declared here for `done`).
local F

-- Ends an accepted action: remembers the ok, answers with the new view.
local function done()
  remember('ok')
  return view_reply(F.cur)
end

if PRIOR then
  if PRIOR == 'ok' then
    return view_reply()
  end
  local code, unit = string.match(PRIOR, '^err\n([^\n]*)\n(.*)$')
  return { 'err', code, unit }
end

F = {}
do
  local raw = redis.call('HGETALL', K_FAM)
  for i = 1, #raw, 2 do
    F[raw[i]] = raw[i + 1]
  end
end
-- A family hash of another load's token is what a failed load of this id left
-- (load_part.lua): not this batch's family.
if not F.rank or F.load ~= META[4] then
  -- Not remembered: an unknown family has no requests to repeat, and remembering them
  -- would let anyone create keys.
  return { 'err', 'unknown_family', '' }
end

-- hub rules::phase_at over the family's current session (start, deadline, kind).
local PHASE
do
  if F.oresult or NOW >= tonumber(F.deadline) then
    PHASE = 'done'
  elseif NOW >= tonumber(F.start) then
    PHASE = 'formal'
  elseif F.skind == 'supplementary' then
    PHASE = 'waiting'
  elseif NOW < tonumber(META[2]) then
    PHASE = 'before_preselection'
  elseif META[3] and META[3] ~= '' and NOW >= tonumber(META[3]) then
    PHASE = 'waiting'
  else
    PHASE = 'preselection'
  end
end

-- A final outcome answers every action but the supplementary application.
local function outcome_refusal()
  if F.oresult == 'selected' then
    return refuse('already_has_unit', F.ounit)
  elseif F.oresult == 'waived' then
    return refuse('waived')
  elseif F.oresult == 'no_unit' then
    return refuse('window_closed')
  end
  return nil
end

-- The list an edit may touch in this phase, or the refusal.
local function list_access(list)
  local needed, declared, field
  if list == 'cart' then
    needed, declared, field = 'preselection', F.pdecl, 'cart'
  else
    needed, declared, field = 'formal', F.fdecl, 'intent'
  end
  if PHASE ~= needed then
    return nil, refuse('window_closed')
  end
  if not declared then
    return nil, refuse('declaration_required')
  end
  return decode_list(F[field]), nil
end

-- Whether the family may add `unit` to a list: nil, or the refusal.
local function addable(unit)
  local layout = redis.call('HGET', K_UNITS, unit)
  if not layout then
    return refuse('unknown_unit', unit)
  end
  if not index_of(decode_list(F.layouts), layout) then
    return refuse('not_eligible', unit)
  end
  if redis.call('HEXISTS', K_TAKEN, unit) == 1 then
    return refuse('unit_taken', unit)
  end
  return nil
end

-- Stores a new list and its event; nothing when the list is unchanged.
local function write_list(list, current, units)
  if same_list(current, units) then
    return
  end
  local field = 'intent'
  if list == 'cart' then
    field = 'cart'
  end
  local text = jlist(units)
  redis.call('HSET', K_FAM, field, text)
  emit(K_SEQ, K_EVENTS, NOW_S, '{"kind":"list_changed","family":' .. jstr(FAMILY)
    .. ',"list":"' .. list .. '","units":' .. text .. '}')
end
