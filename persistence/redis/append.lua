-- Compare-and-append a batch of events to a stream and to its partition's
-- log, atomically.
--
-- KEYS[1]  stream list: element i is the partition position of version i+1
-- KEYS[2]  partition event hash: field = decimal position, value = body
-- KEYS[3]  partition head: decimal count of positions written
-- KEYS[4]  optional: the declined-mark of the command the batch records
-- KEYS[5]  optional: the applied-mark of that command (its version)
-- ARGV[1]  expected stream version
-- ARGV[2]  not-after time in Unix ms by this server's clock, 0 for none
-- ARGV[3]  how long the applied-mark lasts (ms)
-- ARGV[4..] encoded event bodies, in version order
--
-- Returns {1, new version, first position}, {0, actual version}, {2} when
-- the not-after time has passed, {3} when the command was declined, or
-- {4, version} when the command was applied already, at that version.
--
-- Every check runs before the first write because Redis does not roll a
-- script back when it fails halfway. A wrong-typed key fails its read here.
local notAfter = tonumber(ARGV[2])
if notAfter > 0 then
  -- The server's clock, not the caller's: one clock decides for every
  -- member whether an attempt came too late.
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= notAfter then
    return {2}
  end
end
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then
  return {3}
end
if KEYS[5] then
  local at = redis.call('GET', KEYS[5])
  if at then
    return {4, tonumber(at)}
  end
end

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
for i = 4, #ARGV do
  head = head + 1
  -- format, not tostring: Lua prints large numbers in exponent notation.
  local pos = string.format('%d', head)
  redis.call('HSET', KEYS[2], pos, ARGV[i])
  redis.call('RPUSH', KEYS[1], pos)
end
redis.call('SET', KEYS[3], string.format('%d', head))
local version = actual + #ARGV - 3
if KEYS[5] then
  redis.call('SET', KEYS[5], string.format('%d', version), 'PX', ARGV[3])
end
return {1, version, first}
