-- Records that a command was refused while its stream was at a version.
-- KEYS[1]  stream list
-- KEYS[2]  the command's declined-mark
-- ARGV[1]  the version the refusal was decided at
-- ARGV[2]  until when the mark lasts, Unix ms by this server's clock
-- Returns {1} when recorded, or {0, actual version}.
local actual = redis.call('LLEN', KEYS[1])
if actual ~= tonumber(ARGV[1]) then
  return {0, actual}
end
-- An absolute expiry: the mark lasts until the same clock (Redis's) that
-- judges the appends' deadlines reaches it, whatever the member's clock.
redis.call('SET', KEYS[2], '1', 'PXAT', ARGV[2])
return {1}
