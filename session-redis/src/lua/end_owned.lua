-- Ends one session of the owner that delete_by_owner names, if the session
-- still belongs to that owner: it may have moved to another since its
-- index entry was written.
-- KEYS[1]  the session hash
-- ARGV[1]  the owner's name
-- Returns 1 when it ended the session, 0 when there was no session, and -1
-- when the session belongs to another owner or to none; that one stays.
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
