-- cache_lock_release: a coalescing leader lets go of its lock, only if it still holds it.
--
-- KEYS[1]  the flight's lock key (gw:v1:cache:{digest}:lock)
-- ARGV[1]  the leader's token (the value it set with SET NX PX)
-- Returns  1 when the lock was ours and is gone, 0 when it had expired or another leader holds it
--          (a lock that expired and was taken over must never be deleted by the old leader).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
