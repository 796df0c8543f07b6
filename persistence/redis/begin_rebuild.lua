-- Start a rebuild: make a never used generation the projection's next one,
-- unless a rebuild is running (then leave it be).
--
-- Returns {started (1 or 0), cur, next, old, old_at}.
if m[2] ~= 0 then
  return {0, m[1], m[2], m[3], m[4]}
end
-- seq remembers every generation handed out, including retired ones whose
-- fences still stand.
local gen = math.max(m[1], m[5]) + 1
redis.call('HSET', KEYS[1], 'cur', dec(m[1]), 'next', dec(gen), 'seq', dec(gen))
return {1, m[1], gen, m[3], m[4]}
