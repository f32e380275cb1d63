-- Stores a new session unless the key already holds one, and adds an owned
-- session to its owner's index in the same step.
-- KEYS[1]  the session hash
-- KEYS[2]  only for a session with an owner, and never on Cluster (where
--          the store indexes it first, on its own): the owner's index
-- ARGV[1]  expires_at, ms since the Unix epoch (the key's PEXPIREAT is
--          one ms before it: see expire_at)
-- ARGV[2]  with KEYS[2] only: the session id
-- ARGV[3]  with KEYS[2] only: the owner's until, ms since the Unix epoch
-- ARGV[4]  with KEYS[2] only: now, ms since the Unix epoch
-- then     field, value, field, value, … (metadata, owner and data)
-- Returns 1 when stored, 0 when the key was taken.
if redis.call('EXISTS', key) == 1 then
  return 0
end
local fields = 2
if KEYS[2] then
  index_owner(KEYS[2], ARGV[2], ARGV[3], ARGV[4])
  fields = 5
end
batched('HSET', ARGV, fields, #ARGV)
expire_at(ARGV[1])
return 1
