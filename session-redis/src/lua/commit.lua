-- Applies one request's changes to a live session, as one atomic step.
-- KEYS[1]            the session hash
-- KEYS[2]            only when the session gets a new owner, and never on
--                    Cluster (where the store indexes it first, on its
--                    own): the new owner's index
-- ARGV[1]            the new expires_at, ms since the Unix epoch
-- ARGV[2]            '1' to delete every data field first, else '0'
-- ARGV[3 … 5]        with KEYS[2] only: the session id, the new owner's
--                    until and now (ms since the Unix epoch)
-- ARGV[a]            n, how many fields to delete; a is 6 with KEYS[2],
--                    else 3
-- ARGV[a+1 … a+n]    the fields to delete (data fields; owner and
--                    owner_until when the session loses its owner)
-- ARGV[a+n+1 …]      field, value, field, value, … (data fields; owner and
--                    owner_until when the session gets a new one)
-- Returns the new version, or nil when no live session has this key: a
-- commit never brings an expired or deleted session back.
--
-- Every command here runs on each write request, and Redis usually serves
-- many app servers, so the common path is four commands: HGET, one HSET
-- (the values and expires_at together), HINCRBY, PEXPIREAT. An owner change
-- travels in the same HDEL and HSET; only a new owner adds the index work.
local version = redis.call('HGET', key, 'version')
if not tonumber(version) then
  -- Rare: tell an absent session (nothing to commit to) from a corrupt one.
  if redis.call('EXISTS', key) == 0 then
    return false
  end
  return redis.error_reply('SESSIONCORRUPT the session hash has no integer version')
end
local at = 3
if KEYS[2] then
  index_owner(KEYS[2], ARGV[3], ARGV[4], ARGV[5])
  at = 6
end
if ARGV[2] == '1' then
  local data_fields = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 2) == 'd:' then
      data_fields[#data_fields + 1] = field
    end
  end
  batched('HDEL', data_fields, 1, #data_fields)
end
local removals = tonumber(ARGV[at])
batched('HDEL', ARGV, at + 1, at + removals)
local sets = {'expires_at', ARGV[1]}
for i = at + 1 + removals, #ARGV do
  sets[#sets + 1] = ARGV[i]
end
batched('HSET', sets, 1, #sets)
version = redis.call('HINCRBY', key, 'version', 1)
-- Last: an expiry already past deletes the key, and nothing may write after.
redis.call('PEXPIREAT', key, ARGV[1])
return version
