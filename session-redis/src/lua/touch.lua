-- Moves a live session's expiry without touching its data or version.
-- KEYS[1]  the session hash
-- ARGV[1]  the new expires_at, ms since the Unix epoch
-- Returns 1 when the session was live, else 0.
if redis.call('EXISTS', key) == 0 then
  return 0
end
redis.call('HSET', key, 'expires_at', ARGV[1])
expire_at(ARGV[1])
return 1
