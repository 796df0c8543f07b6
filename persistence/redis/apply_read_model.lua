-- Apply a batch of read-model document changes and move the checkpoint,
-- atomically, only if the checkpoint is the expected one.
--
-- KEYS[1]  checkpoint: decimal position, or 'retired' once fenced
-- KEYS[2]  documents hash: document key -> document
-- KEYS[3]  key index: sorted set of the hash's keys, all at score 0, so
--          ListDocs can range over them in byte order (ZRANGEBYLEX)
-- ARGV[1]  expected checkpoint (0 when never applied)
-- ARGV[2]  next checkpoint
-- ARGV[3]  n, the number of documents to set
-- ARGV[4 .. 3+2n]  key, document pairs to set
-- ARGV[4+2n ..]    keys to delete
--
-- Returns {1} when applied, {0, actual checkpoint} when the checkpoint is
-- another one, {-1} when the generation is retired.
--
-- Every check runs before the first write: Redis does not roll a script
-- back when it fails halfway. The caller bounds a batch (MaxDocBatch) far
-- below the number of values unpack() can pass at once.
local raw = redis.call('GET', KEYS[1])
local cp = 0
if raw then
  if raw == 'retired' then
    return {-1}
  end
  if not string.match(raw, '^[0-9]+$') then
    return redis.error_reply('GRANARY_CORRUPT read model checkpoint is not a decimal count')
  end
  cp = tonumber(raw)
end
if cp ~= tonumber(ARGV[1]) then
  return {0, cp}
end

local n = tonumber(ARGV[3])
if n > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4, 3 + 2 * n))
  local members = {}
  for i = 1, n do
    members[2 * i - 1] = 0
    members[2 * i] = ARGV[2 + 2 * i]
  end
  redis.call('ZADD', KEYS[3], unpack(members))
end
if #ARGV >= 4 + 2 * n then
  redis.call('HDEL', KEYS[2], unpack(ARGV, 4 + 2 * n, #ARGV))
  redis.call('ZREM', KEYS[3], unpack(ARGV, 4 + 2 * n, #ARGV))
end
redis.call('SET', KEYS[1], ARGV[2])
return {1}
