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
-- many app servers, so the common path is three commands: HGET (the
-- version), one HSET (the new version, expires_at and the values together)
-- and PEXPIREAT. Each redis.call costs Redis about as much again as the
-- command it runs (arguments and reply cross into Lua and back), so the
-- version is worked out here and rides in the HSET instead of costing an
-- HINCRBY of its own. An owner change travels in the same HDEL and HSET;
-- only a new owner adds the index work.
local version = tonumber(redis.call('HGET', key, 'version'))
-- A version is a non-negative integer; Lua numbers are exact up to 2^53,
-- which no session reaches one commit at a time.
if not version or version < 0 or version % 1 ~= 0 then
  -- Rare: tell an absent session (nothing to commit to) from a corrupt one.
  if redis.call('EXISTS', key) == 0 then
    return false
  end
  return redis.error_reply('SESSIONCORRUPT the session hash has no integer version')
end
version = version + 1
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
-- Guarded: even an empty batched() call costs a Lua call on every write.
if removals > 0 then
  batched('HDEL', ARGV, at + 1, at + removals)
end
local first = at + 1 + removals
-- '%d' rather than a plain number: Redis would format a Lua number as a
-- float ('%.17g'), which costs several times the integer formatting.
local new_version = string.format('%d', version)
if #ARGV - first < BATCH then
  redis.call('HSET', key, 'version', new_version, 'expires_at', ARGV[1], unpack(ARGV, first))
else
  redis.call('HSET', key, 'version', new_version, 'expires_at', ARGV[1])
  batched('HSET', ARGV, first, #ARGV)
end
-- Last: an expiry already past deletes the key, and nothing may write after.
expire_at(ARGV[1])
return version
