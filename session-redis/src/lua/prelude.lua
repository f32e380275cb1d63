-- Shared by every session script (prepended at build time).
local key = KEYS[1]

-- Lua's unpack() is bounded by its stack (about 8000 values), so a long list
-- of fields travels in batches. The batch size is even, so field/value pairs
-- never split.
local BATCH = 1000
local function batched(command, list, first, last)
  for i = first, last, BATCH do
    redis.call(command, key, unpack(list, i, math.min(i + BATCH - 1, last)))
  end
end

-- Redis drops a key once its clock is past PEXPIREAT (now > at), while a
-- record has expired from its expires_at on (expires_at <= now, as load
-- decides). Expiring the key one millisecond sooner makes the two agree, so
-- no script finds, and commits to, a record that load has already called
-- gone. ms is a string of whole milliseconds; Lua's numbers hold it exactly.
local function expire_at(ms)
  redis.call('PEXPIREAT', key, string.format('%d', ms - 1))
end
