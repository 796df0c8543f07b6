-- Drops a pending record if the claim still holds.
-- KEYS[1]: the record; ARGV[1]: the claim's pending prefix.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
