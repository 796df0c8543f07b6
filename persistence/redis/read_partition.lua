-- Read a range of a partition's log.
--
-- KEYS[1]  partition head
-- KEYS[2]  partition event hash
-- ARGV[1]  read positions after this one
-- ARGV[2]  at most this many
-- ARGV[3]  reply byte budget: stop after the body that reaches it
--
-- Returns {head, body, body, ...} for positions ARGV[1]+1 onwards, up to
-- head; a body is nil when the hash lacks the position, which the caller
-- reports as corruption. Reading head in the same script is what makes a
-- missing body distinguishable from one not written yet.
local head = 0
local raw = redis.call('GET', KEYS[1])
if raw then
  if not string.match(raw, '^[0-9]+$') then
    return redis.error_reply('GRANARY_CORRUPT partition head is not a decimal count')
  end
  head = tonumber(raw)
end

local after = tonumber(ARGV[1])
local last = after + tonumber(ARGV[2])
if last > head then
  last = head
end
local budget = tonumber(ARGV[3])
local out = {head}
local bytes = 0
for pos = after + 1, last do
  local body = redis.call('HGET', KEYS[2], string.format('%d', pos))
  out[#out + 1] = body
  if body then
    bytes = bytes + #body
  end
  if bytes >= budget then
    break
  end
end
return out
