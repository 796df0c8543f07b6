-- Replaces a pending record by the final one if the claim still holds.
-- KEYS[1]: the record; ARGV[1]: the claim's pending prefix "P|<token>|";
-- ARGV[2]: the encoded response (encodeResponse); ARGV[3]: the final
-- record's TTL (ms).
-- The final value keeps the claim's fingerprint: "R|<fingerprint>|<response>".
-- Returns 1 when replaced, else 0.
local v = redis.call('GET', KEYS[1])
local n = string.len(ARGV[1])
if v and string.sub(v, 1, n) == ARGV[1] then
  redis.call('SET', KEYS[1], 'R|' .. string.sub(v, n + 1) .. '|' .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
