-- Shared beginning of the projection meta scripts (prepended to each).
--
-- KEYS[1]  meta hash: cur, next, old, old_at (unix ms), seq; every field a
--          decimal count, a missing one meaning cur 1, the others 0.
--
-- read_meta returns {cur, next, old, old_at, seq}, or nil when a field is
-- not a decimal count.
local function read_meta()
  local raw = redis.call('HMGET', KEYS[1], 'cur', 'next', 'old', 'old_at', 'seq')
  local defaults = {1, 0, 0, 0, 0}
  local m = {}
  for i = 1, 5 do
    local v = raw[i]
    if v then
      if not string.match(v, '^[0-9]+$') then
        return nil
      end
      m[i] = tonumber(v)
    else
      m[i] = defaults[i]
    end
  end
  return m
end

-- format, not tostring: Lua prints large numbers in exponent notation.
local function dec(n)
  return string.format('%d', n)
end

local m = read_meta()
if not m then
  return redis.error_reply('GRANARY_CORRUPT projection meta field is not a decimal count')
end
