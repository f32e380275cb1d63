-- Shared by every session script (prepended at build time).
local key = KEYS[1]

-- Lua's unpack() is bounded by its stack (about 8000 values), so a long list
-- of fields travels in batches. The batch size is even, so field/value pairs
-- never split.
local function batched(command, list, first, last)
  local size = 1000
  for i = first, last, size do
    redis.call(command, key, unpack(list, i, math.min(i + size - 1, last)))
  end
end
