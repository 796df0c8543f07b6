-- Shared by read_stream.lua and load_stream.lua, which the Go side
-- prefixes with it (Redis scripts cannot include one another).
--
-- bodies appends position, body for each of positions to out, stopping
-- after the body that brings them to budget bytes (so at least one), and
-- returns out. A body is nil when the hash lacks its position, which the
-- caller reports as corruption.
local function bodies(positions, eventsKey, budget, out)
  local bytes = 0
  for i = 1, #positions do
    local body = redis.call('HGET', eventsKey, positions[i])
    out[#out + 1] = positions[i]
    out[#out + 1] = body
    if body then
      bytes = bytes + #body
    end
    if bytes >= budget then
      break
    end
  end
  return out
end
