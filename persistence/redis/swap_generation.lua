-- Swap the rebuilt generation in: next becomes cur, cur becomes old.
--
-- ARGV[1]  the caller's cur
-- ARGV[2]  the caller's next
-- ARGV[3]  now, unix ms
--
-- Returns {1} when swapped, {0, cur, next, old} when the meta is not
-- cur = ARGV[1], next = ARGV[2] and no old generation still to delete.
if m[1] ~= tonumber(ARGV[1]) or m[2] ~= tonumber(ARGV[2]) or m[3] ~= 0 then
  return {0, m[1], m[2], m[3]}
end
redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'next', '0', 'old', ARGV[1], 'old_at', ARGV[3])
return {1}
