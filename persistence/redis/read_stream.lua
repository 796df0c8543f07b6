-- Read a range of a stream with the bodies of its events (after
-- stream_bodies.lua, which defines bodies).
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
return bodies(positions, KEYS[2], tonumber(ARGV[3]), {version})
