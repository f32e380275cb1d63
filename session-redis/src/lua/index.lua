
-- Shared by the scripts that add a session to its owner's index (prepended
-- at build time, after the prelude).
--
-- An owner's index is a sorted set: member = session id, score = the
-- owner's until (ms), the latest that session can live. Adding an entry
-- also drops the entries whose until has passed (their sessions must be
-- gone) and moves the index key's own expiry to its highest score, so an
-- index whose sessions are all gone vanishes by itself and nothing else
-- ever has to clean it.
local function index_owner(index, member, deadline, now)
  -- GT: a score only rises, so an entry outlives every write that made it,
  -- whatever order racing writes land in.
  redis.call('ZADD', index, 'GT', deadline, member)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  -- Empty when the new entry was already past its until: then the set,
  -- and so the key, is gone.
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', index, last[2])
  end
end
