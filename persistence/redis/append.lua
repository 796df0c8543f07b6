-- Compare-and-append a batch of events to a stream and to its partition's
-- log, atomically. The batch may record several commands (a hot grain's
-- queued commands), each fenced on its own.
--
-- KEYS[1]  stream list: element i is the partition position of version i+1
-- KEYS[2]  partition event hash: field = decimal position, value = body
-- KEYS[3]  partition head: decimal count of positions written
-- KEYS[2+2j], KEYS[3+2j]  for command j = 1..m: its declined-mark and its
--          applied-mark (the version it was applied at)
-- ARGV[1]  expected stream version
-- ARGV[2]  not-after time of the batch in Unix ms by this server's clock, 0 for none
-- ARGV[3]  how long an applied-mark lasts (ms)
-- ARGV[4]  m, the number of commands
-- ARGV[3+2j], ARGV[4+2j]  for command j: how many events of the batch end
--          with its last one, and its own not-after time (0 for none)
-- ARGV[5+2m..] encoded event bodies, in version order
--
-- Returns {1, new version, first position}, {0, actual version}, {2} when
-- the batch's not-after time has passed, {2, j} when command j's has,
-- {3, j} when command j was declined, or {4, version, j} when command j
-- was applied already, at that version.
--
-- Every check runs before the first write because Redis does not roll a
-- script back when it fails halfway. A wrong-typed key fails its read here.
-- Calls are per batch, not per event (one HSET and one RPUSH for all
-- bodies, one MGET for all marks), and one per command: a busy stream's
-- batch costs little more than one command.
local now
local function late(ms)
  if ms <= 0 then
    return false
  end
  if not now then
    -- The server's clock, not the caller's: one clock decides for every
    -- member whether an attempt came too late.
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now >= ms
end

-- The marks first: that a command was applied or refused is true whatever
-- the clock says, so a late copy of an applied command is answered as the
-- duplicate it is, never as "expired, not applied".
-- One MGET for many of them: a hot grain's batch records a dozen
-- commands, and every redis.call costs more than the read it makes. In
-- chunks, as the bodies below: unpack's values live on Lua's C stack.
local m = tonumber(ARGV[4])
for from = 1, m, 500 do
  local to = math.min(m, from + 499)
  local marks = redis.call('MGET', unpack(KEYS, 2 + 2 * from, 3 + 2 * to))
  for j = from, to do
    local k = 2 * (j - from)
    if marks[k + 1] then
      return {3, j}
    end
    if marks[k + 2] then
      return {4, tonumber(marks[k + 2]), j}
    end
  end
end
if late(tonumber(ARGV[2])) then
  return {2}
end
for j = 1, m do
  if late(tonumber(ARGV[4 + 2 * j])) then
    return {2, j}
  end
end

local actual = redis.call('LLEN', KEYS[1])
if actual ~= tonumber(ARGV[1]) then
  return {0, actual}
end

local head = 0
local raw = redis.call('GET', KEYS[3])
if raw then
  if not string.match(raw, '^[0-9]+$') then
    return redis.error_reply('GRANARY_CORRUPT partition head is not a decimal count')
  end
  head = tonumber(raw)
end
-- A head that disagrees with the hash would reuse or skip positions.
if redis.call('HLEN', KEYS[2]) ~= head then
  return redis.error_reply('GRANARY_CORRUPT partition head does not match its event count')
end

local first = head + 1
local bodies = 5 + 2 * m
local n = #ARGV - bodies + 1
-- In chunks: unpack's arguments live on Lua's C stack (8000 slots).
local i = 0
while i < n do
  local fields, positions = {}, {}
  for k = i, math.min(n, i + 1000) - 1 do
    -- format, not tostring: Lua prints large numbers in exponent notation.
    local pos = string.format('%d', first + k)
    fields[#fields + 1] = pos
    fields[#fields + 1] = ARGV[bodies + k]
    positions[#positions + 1] = pos
  end
  redis.call('HSET', KEYS[2], unpack(fields))
  redis.call('RPUSH', KEYS[1], unpack(positions))
  i = i + 1000
end
head = head + n
redis.call('SET', KEYS[3], string.format('%d', head))
for j = 1, m do
  redis.call('SET', KEYS[3 + 2 * j], string.format('%d', actual + tonumber(ARGV[3 + 2 * j])), 'PX', ARGV[3])
end
return {1, actual + n, first}
