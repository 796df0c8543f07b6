-- Indexes one saga: its first start time, its record, and whether it is
-- open, in one call (it was three round trips: a saga updates its record
-- at every step).
--
-- KEYS[1] started zset, KEYS[2] record hash, KEYS[3] open zset
-- ARGV[1] member "kind/id"; ARGV[2] start time (ms) of this update
-- ARGV[3], ARGV[4] the record's JSON before and after its start time
-- ARGV[5] updated time (ms); ARGV[6] "1" when the saga is open
--
-- The first start time is kept: ZADD NX never moves it, and the record is
-- written with the stored one.
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
local started = string.format('%d', tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])))
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3] .. started .. ARGV[4])
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return 1
