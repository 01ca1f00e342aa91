-- cache_lookup_or_lock: a cache lookup and, on a miss, the single-flight lock, in one atomic step.
--
-- KEYS[1]  the entry key (gw:v1:cache:{digest})
-- KEYS[2]  the flight's lock key (KEYS[1]..":lock")
-- KEYS[3]  the flight's waiter count (KEYS[1]..":waiters"): followers that wait through the store
-- ARGV[1]  the caller's token (stored in the lock when it takes it)
-- ARGV[2]  the lock's time to live, in milliseconds (also the waiter count's)
-- Returns  {0, entry}   the entry is there (the caller decodes it; nothing else was touched)
--          {1}          no entry, and the caller now holds the lock: it leads
--          {2, holder}  no entry, another leader holds the lock (its token): the caller follows,
--                       and is counted as a waiter so the leader's cache_finish notifies it
-- Lua 5.1 only (Redis), no globals.

local entry = redis.call("GET", KEYS[1])
if entry then
  return {0, entry}
end
if redis.call("SET", KEYS[2], ARGV[1], "NX", "PX", tonumber(ARGV[2])) then
  return {1}
end
local holder = redis.call("GET", KEYS[2])
redis.call("INCR", KEYS[3])
redis.call("PEXPIRE", KEYS[3], tonumber(ARGV[2]))
return {2, holder}
