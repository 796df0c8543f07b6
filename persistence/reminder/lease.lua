-- Lease the named reminders that are still due: the second step of a
-- partitioned claim, after a read-only look picked the oldest across the
-- partitions. Another member may have leased one in between; it is skipped.
-- KEYS[1]: one partition's due sorted set (score = unix ms)
-- ARGV[1]: now (unix ms); ARGV[2]: lease end (unix ms); ARGV[3..]: members
-- Returns a flat list: member, old score, member, old score, ...
local out = {}
local now = tonumber(ARGV[1])
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    out[#out + 1] = ARGV[i]
    out[#out + 1] = score
  end
end
return out
