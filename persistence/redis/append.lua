-- Compare-and-append a batch of events to a stream and to its partition's
-- log, atomically.
--
-- KEYS[1]  stream list: element i is the partition position of version i+1
-- KEYS[2]  partition event hash: field = decimal position, value = body
-- KEYS[3]  partition head: decimal count of positions written
-- ARGV[1]  expected stream version
-- ARGV[2..] encoded event bodies, in version order
--
-- Returns {1, new version, first position} or {0, actual version}.
--
-- Every check runs before the first write because Redis does not roll a
-- script back when it fails halfway. A wrong-typed key fails its read here.
local actual = redis.call('LLEN', KEYS[1])
if actual ~= tonumber(ARGV[1]) then
  return {0, actual}
end

local head = 0
local raw = redis.call('GET', KEYS[3])
if raw then
  if not string.match(raw, '^[0-9]+$') then
    return redis.error_reply('GRANARY_CORRUPT partition head is not a decimal count')
  end
  head = tonumber(raw)
end
-- A head that disagrees with the hash would reuse or skip positions.
if redis.call('HLEN', KEYS[2]) ~= head then
  return redis.error_reply('GRANARY_CORRUPT partition head does not match its event count')
end

local first = head + 1
for i = 2, #ARGV do
  head = head + 1
  -- format, not tostring: Lua prints large numbers in exponent notation.
  local pos = string.format('%d', head)
  redis.call('HSET', KEYS[2], pos, ARGV[i])
  redis.call('RPUSH', KEYS[1], pos)
end
redis.call('SET', KEYS[3], string.format('%d', head))
return {1, actual + #ARGV - 1, first}
