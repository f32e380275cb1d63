-- Deletes a session only if its version is still the one the caller read,
-- as one atomic step: a commit lands wholly before (and the session stays,
-- with it) or finds the session gone. cycle_id ends the old id with it, so
-- a commit acknowledged on the old id is never deleted with it.
-- KEYS[1]  the session hash
-- ARGV[1]  the version the caller read
-- Returns 1 when it deleted the session, 0 when there was none, and -1
-- when the session has another version; that one stays.
local version = redis.call('HGET', key, 'version')
if not version then
  if redis.call('EXISTS', key) == 0 then
    return 0
  end
  return redis.error_reply('SESSIONCORRUPT the session hash has no version')
end
if version ~= ARGV[1] then
  return -1
end
-- UNLINK frees a large hash off Redis's main thread.
redis.call('UNLINK', key)
return 1
