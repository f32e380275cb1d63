-- Applies one request's changes to a live session, as one atomic step.
-- KEYS[1]            the session hash
-- ARGV[1]            the new expires_at, ms since the Unix epoch
-- ARGV[2]            '1' to delete every data field first, else '0'
-- ARGV[3]            n, how many data fields to delete
-- ARGV[4 … 3+n]      the data fields to delete
-- ARGV[4+n …]        data field, value, data field, value, …
-- Returns the new version, or nil when no live session has this key: a
-- commit never brings an expired or deleted session back.
--
-- Every command here runs on each write request, and Redis usually serves
-- many app servers, so the common path is four commands: HGET, one HSET
-- (the values and expires_at together), HINCRBY, PEXPIREAT.
local version = redis.call('HGET', key, 'version')
if not tonumber(version) then
  -- Rare: tell an absent session (nothing to commit to) from a corrupt one.
  if redis.call('EXISTS', key) == 0 then
    return false
  end
  return redis.error_reply('SESSIONCORRUPT the session hash has no integer version')
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
local removals = tonumber(ARGV[3])
batched('HDEL', ARGV, 4, 3 + removals)
local sets = {'expires_at', ARGV[1]}
for i = 4 + removals, #ARGV do
  sets[#sets + 1] = ARGV[i]
end
batched('HSET', sets, 1, #sets)
version = redis.call('HINCRBY', key, 'version', 1)
-- Last: an expiry already past deletes the key, and nothing may write after.
redis.call('PEXPIREAT', key, ARGV[1])
return version
