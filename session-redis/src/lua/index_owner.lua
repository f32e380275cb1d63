-- Adds a session to its owner's index, on its own: on Redis Cluster the
-- index and the session hash sit in different slots, so no one script can
-- write both. The store runs this first, then the session's script, so a
-- session with an owner is never live unindexed.
-- KEYS[1]  the owner's index
-- ARGV[1]  the session id
-- ARGV[2]  the owner's until, ms since the Unix epoch
-- ARGV[3]  now, ms since the Unix epoch
-- Returns 1.
index_owner(key, ARGV[1], ARGV[2], ARGV[3])
return 1
