-- cache_lock_extend: a coalescing leader still at work renews its lock, only if it still holds it.
--
-- KEYS[1]  the flight's lock key (gw:v1:cache:{digest}:lock)
-- ARGV[1]  the leader's token
-- ARGV[2]  the new time to live, in milliseconds
-- Returns  1 when renewed, 0 when the lock had expired or another leader holds it (the caller then
--          stops renewing: a follower has taken over).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
