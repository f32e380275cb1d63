-- Claims another library's session for migration (see migrate/mod.rs).
-- KEYS[1]: the old record (a string); KEYS[2]: its forwarding marker.
-- ARGV[1]: the session-kit id this claim offers; ARGV[2]: the marker's
-- lifetime in ms; ARGV[3]: the largest old record moved, in bytes.
-- Returns {id, record, size}: id false when there is neither a record nor
-- a marker; record false when it is gone (a parallel claim finished) or
-- too large (size tells).
local forward = redis.call('GET', KEYS[2])
local size = redis.call('STRLEN', KEYS[1])
if size > tonumber(ARGV[3]) then
  return {false, false, size}
end
local record = false
if size > 0 then
  record = redis.call('GET', KEYS[1])
end
if not forward then
  if not record then
    return {false, false, 0}
  end
  -- The first claim: every parallel or later one is sent to this id.
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  forward = ARGV[1]
end
return {forward, record, size}
