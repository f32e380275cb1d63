-- Ends one session of the owner that delete_by_owner names, if the session
-- still belongs to that owner: it may have moved to another since its
-- index entry was written.
-- KEYS[1]  the session hash
-- ARGV[1]  the owner's name
-- ARGV[2]  now, in milliseconds since the Unix epoch
-- Returns 1 when it ended the session, 0 when there was no session, and -1
-- when the session belongs to another owner or to none; that one stays.
-- A session past its expires_at is gone, as a load sees it, even if Redis
-- has not expired the key yet (its clock and ours differ by a millisecond
-- or so): counting it as ended made the count disagree with every load.
local expires_at = tonumber(redis.call('HGET', key, 'expires_at'))
if expires_at and expires_at <= tonumber(ARGV[2]) then
  redis.call('UNLINK', key)
  return 0
end
local owner = redis.call('HGET', key, 'owner')
if owner == ARGV[1] then
  -- UNLINK frees a large hash off Redis's main thread.
  redis.call('UNLINK', key)
  return 1
end
if not owner and redis.call('EXISTS', key) == 0 then
  return 0
end
return -1
