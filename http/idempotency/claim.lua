-- Claims an idempotency key unless it holds a record already.
-- KEYS[1]: the record; ARGV[1]: the pending value; ARGV[2]: its TTL (ms).
-- Returns {1} when claimed, else {0, value, pttl} of the record in the way.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
local v = redis.call('GET', KEYS[1])
if not v then
  -- Expired between the two calls on a server that does not freeze time
  -- during scripts: let the caller claim again.
  return {2}
end
return {0, v, redis.call('PTTL', KEYS[1])}
