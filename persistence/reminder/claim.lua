-- Claim due reminders and lease them, in one step so that two members
-- polling at once never take the same reminder.
-- KEYS[1]: the due sorted set (score = unix ms)
-- ARGV[1]: now (unix ms); ARGV[2]: lease end (unix ms); ARGV[3]: limit
-- Returns a flat list: member, old score, member, old score, ...
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], ARGV[2], due[i])
end
return due
