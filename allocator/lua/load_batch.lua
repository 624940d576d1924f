-- load_batch.lua: a new batch (hub EventKind::BatchLoaded, seq 1).
--
-- KEYS: 1 meta, 2 seq, 3 events, 4 units, 5 sessions, 6.. fam:<family> in the order of
--   the plan's families
-- ARGV: 1 now (-1 = TIME), 2 the batch as JSON (already validated by the engine),
--   3 the load plan as JSON: {preselect_start, preselect_end ('' if none),
--   units: [[id, layout]], sessions: [[id, deadline, size]],
--   families: [[id, rank, formal session, start, deadline, kind, layouts JSON,
--   supp_from, supp_until]]} ('' when the family has no supplementary window)
-- Checks: the batch id is not in use (conflict).
-- Writes: meta (batch JSON, gen 1, epoch = now, pre-selection times), seq = 1, the
--   `batch_loaded` entry 1-0, units (id -> layout), sessions (id -> {deadline, size}),
--   one hash per family (static fields + current session + empty lists).
-- Replies: {'ok', epoch} or {'err', 'conflict'}
local K_META, K_SEQ, K_EVENTS, K_UNITS, K_SESSIONS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local NOW, NOW_S = server_now(ARGV[1])
if redis.call('EXISTS', K_META) == 1 or redis.call('EXISTS', K_SEQ) == 1 then
  return { 'err', 'conflict' }
end
local plan = cjson.decode(ARGV[3])

redis.call('HSET', K_META, 'batch', ARGV[2], 'gen', 1, 'epoch', NOW_S,
  'preselect_start', tostring(plan.preselect_start), 'preselect_end', plan.preselect_end)
redis.call('SET', K_SEQ, 1)
redis.call('XADD', K_EVENTS, '1-0', 'at', NOW_S, 'e', '{"kind":"batch_loaded","batch":' .. ARGV[2] .. '}')
for _, u in ipairs(plan.units) do
  redis.call('HSET', K_UNITS, u[1], u[2])
end
for _, s in ipairs(plan.sessions) do
  redis.call('HSET', K_SESSIONS, s[1], '{"deadline":' .. s[2] .. ',"size":' .. s[3] .. '}')
end
for i, f in ipairs(plan.families) do
  redis.call('HSET', KEYS[5 + i], 'id', f[1], 'rank', f[2], 'session', f[3], 'cur', f[3],
    'start', f[4], 'deadline', f[5], 'skind', f[6], 'layouts', f[7],
    'supp_from', f[8], 'supp_until', f[9], 'cart', '[]', 'intent', '[]')
end
return { 'ok', NOW_S }
