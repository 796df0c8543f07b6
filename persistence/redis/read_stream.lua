-- Read a range of a stream with the bodies of its events.
--
-- KEYS[1]  stream list (positions)
-- KEYS[2]  partition event hash
-- ARGV[1], ARGV[2]  LRANGE start and stop (0-based, inclusive)
-- ARGV[3]  reply byte budget: stop after the body that reaches it, so a
--          range of huge events does not become one huge reply
--
-- Returns {stream version, position, body, position, body, ...}; a body is
-- nil when the hash lacks the position, which the caller reports as
-- corruption. The version tells the caller whether more is left.
local version = redis.call('LLEN', KEYS[1])
local positions = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])
local budget = tonumber(ARGV[3])
local out = {version}
local bytes = 0
for i = 1, #positions do
  local body = redis.call('HGET', KEYS[2], positions[i])
  out[#out + 1] = positions[i]
  out[#out + 1] = body
  if body then
    bytes = bytes + #body
  end
  if bytes >= budget then
    break
  end
end
return out
