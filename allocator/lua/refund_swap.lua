-- refund_swap.lua: compare-and-set of one record of the deployment's refund ledger. The
-- gateway decided the new record in Rust against the one it read; this writes it only if
-- that is still the stored one, so two gateways deciding on one refund at once cannot
-- both win: the loser reads again and decides again.
--
-- KEYS: 1 the ledger (hash: refund number -> record, JSON the gateway wrote)
-- ARGV: 1 refund number, 2 '1' when a record is expected, '0' when none is,
--       3 the expected record ('' when none), 4 the new record
-- Checks: the stored record is the expected one, byte for byte (none when none is
--   expected).
-- Writes: ledger[number] = the new record.
-- Replies: {'ok'} | {'lost'} (nothing stored) | {'lost', the stored record}
local K_LEDGER = KEYS[1]
local NO, EXPECTS, EXPECTED, NEW = ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4]

local stored = redis.call('HGET', K_LEDGER, NO)
if stored == false then
  if EXPECTS then
    return { 'lost' }
  end
elseif not EXPECTS or stored ~= EXPECTED then
  return { 'lost', stored }
end
redis.call('HSET', K_LEDGER, NO, NEW)
return { 'ok' }
