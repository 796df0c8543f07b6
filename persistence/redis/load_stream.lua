-- Read what an activation needs: a stream's latest snapshot and the first
-- chunk of its events after it, in one round trip (after stream_bodies.lua,
-- which defines bodies).
--
-- KEYS[1]  snapshot hash (fields v: version, d: data)
-- KEYS[2]  stream list (positions)
-- KEYS[3]  partition event hash
-- ARGV[1]  how many events at most
-- ARGV[2]  reply byte budget, as read_stream.lua's
--
-- Returns {snapshot version, snapshot data, stream version, position, body,
-- ...}, the snapshot's fields nil without one. A version that is not a
-- decimal count comes back as it is, with no event: the caller reports it.
local snap = redis.call('HMGET', KEYS[1], 'v', 'd')
local version = redis.call('LLEN', KEYS[2])
local out = {snap[1] or false, snap[2] or false, version}
local from = 0
if snap[1] then
  if not string.match(snap[1], '^[0-9]+$') then
    return out
  end
  from = tonumber(snap[1])
end
local positions = redis.call('LRANGE', KEYS[2], from, from + tonumber(ARGV[1]) - 1)
return bodies(positions, KEYS[3], tonumber(ARGV[2]), out)
