-- Save a snapshot unless a newer or equal one is stored.
--
-- KEYS[1]  snapshot hash: v = decimal version, d = data
-- KEYS[2]  the stream list, to refuse snapshots ahead of the stream
-- ARGV[1]  version
-- ARGV[2]  data
--
-- Returns {1} when stored, {0} when an equal or newer one is kept, and
-- {-1, stream version} when the snapshot is ahead of the stream.
local version = tonumber(ARGV[1])
local events = redis.call('LLEN', KEYS[2])
if version > events then
  return {-1, events}
end

local current = redis.call('HGET', KEYS[1], 'v')
if not current and redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('GRANARY_CORRUPT snapshot has no version')
end
if current then
  if not string.match(current, '^[0-9]+$') then
    return redis.error_reply('GRANARY_CORRUPT snapshot version is not a decimal count')
  end
  if tonumber(current) >= version then
    return {0}
  end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
return {1}
