-- Stores a new session unless the key already holds one.
-- KEYS[1]  the session hash
-- ARGV[1]  expires_at, ms since the Unix epoch: the key's PEXPIREAT
-- ARGV[2…] field, value, field, value, … (metadata and data)
-- Returns 1 when stored, 0 when the key was taken.
if redis.call('EXISTS', key) == 1 then
  return 0
end
batched('HSET', ARGV, 2, #ARGV)
redis.call('PEXPIREAT', key, ARGV[1])
return 1
