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
