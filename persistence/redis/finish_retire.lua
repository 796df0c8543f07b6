-- Forget the old generation once its data is deleted.
--
-- ARGV[1]  the generation deleted; nothing changes unless it is old.
--
-- Returns {1} when cleared, {0} otherwise.
if m[3] == 0 or m[3] ~= tonumber(ARGV[1]) then
  return {0}
end
redis.call('HSET', KEYS[1], 'old', '0', 'old_at', '0')
return {1}
