-- lib.lua: helpers shared by every script. `LIST_CAP` comes from the generated prelude
-- (hub's rules); the family hash's fields are declared in redis_engine/family_hash.rs.
-- The engine prepends this file (and, for
-- family actions, act.lua) to each script at build time, so each script stays one
-- atomic EVALSHA with no cross-script calls. Before it comes one line from Rust:
-- `local REPLIES_KEPT = <allocator::REPLIES_PER_FAMILY>` (see act.lua).
--
-- Conventions: times are integer milliseconds on the server's clock; events are hub
-- `EventKind` values as JSON, appended to the batch stream with ID `<seq>-0` and the
-- fields `at` (ms) and `e` (the JSON). JSON is built by hand where cjson would encode
-- an empty list as `{}`.

-- The server time: ARGV `now` is -1 in production (use Redis TIME), or an injected test
-- clock's value. Returns the number and its exact decimal text.
local function server_now(arg)
  if arg ~= '-1' then
    return tonumber(arg), arg
  end
  local t = redis.call('TIME')
  local s = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  return tonumber(s), s
end

local function jstr(s)
  return cjson.encode(s)
end

-- A JSON array of strings; `[]` when empty (cjson would write `{}`).
local function jlist(t)
  if #t == 0 then
    return '[]'
  end
  local parts = {}
  for i, v in ipairs(t) do
    parts[i] = cjson.encode(v)
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

local function decode_list(s)
  if not s or s == '' then
    return {}
  end
  return cjson.decode(s)
end

local function index_of(t, v)
  for i, x in ipairs(t) do
    if x == v then
      return i
    end
  end
  return nil
end

local function same_list(a, b)
  if #a ~= #b then
    return false
  end
  for i = 1, #a do
    if a[i] ~= b[i] then
      return false
    end
  end
  return true
end

local function copy_list(t)
  local c = {}
  for i, v in ipairs(t) do
    c[i] = v
  end
  return c
end

-- Appends one event: the next seq and the stream entry, in the caller's script.
local function emit(k_seq, k_events, now_s, event_json)
  local seq = redis.call('INCR', k_seq)
  redis.call('XADD', k_events, seq .. '-0', 'at', now_s, 'e', event_json)
  return seq
end

-- Writes a family's unit (confirm or automatic): outcome, holder and event.
local function write_selected(k_seq, k_events, k_taken, k_fam, family, unit, how, now_s)
  emit(k_seq, k_events, now_s, '{"kind":"selected","family":' .. jstr(family)
    .. ',"unit":' .. jstr(unit) .. ',"how":"' .. how .. '"}')
  redis.call('HSET', k_fam, 'oresult', 'selected', 'ounit', unit, 'outcome',
    '{"result":"selected","unit":' .. jstr(unit) .. ',"how":"' .. how .. '","at":' .. now_s .. '}')
  redis.call('HSET', k_taken, unit,
    '{"family":' .. jstr(family) .. ',"how":"' .. how .. '","at":' .. now_s .. '}')
end

-- Writes a family's empty result ('absent', 'no_intentions' or 'no_free_intention').
local function write_no_unit(k_seq, k_events, k_fam, family, reason, now_s)
  emit(k_seq, k_events, now_s, '{"kind":"no_unit","family":' .. jstr(family)
    .. ',"reason":"' .. reason .. '"}')
  redis.call('HSET', k_fam, 'oresult', 'no_unit', 'outcome',
    '{"result":"no_unit","reason":"' .. reason .. '","at":' .. now_s .. '}')
end
