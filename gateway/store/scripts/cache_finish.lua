-- cache_finish: a coalescing leader is done: what it leaves first, then its lock, then the wake-up.
--
-- KEYS[1]  the entry key            KEYS[2]  the flight's lock key
-- KEYS[3]  the flight's outcome key KEYS[4]  the flight's waiter count (see cache_lookup_or_lock)
-- ARGV[1]  the leader's token
-- ARGV[2]  what to write: "entry" (ARGV[3] under KEYS[1]), "outcome" (ARGV[3] under KEYS[3]), "none"
-- ARGV[3]  the bytes to write ("" for "none")
-- ARGV[4]  their time to live, in milliseconds
-- ARGV[5]  the channel the followers listen on
-- Returns  {released, waiters}: released = 1 when the lock was ours and is gone, 0 when it had
--          expired or another leader holds it (a lock taken over is never deleted by the old
--          leader); waiters = how many followers had registered (notified only when > 0, so a
--          flight nobody followed costs no PUBLISH).
-- Lua 5.1 only (Redis), no globals.

if ARGV[2] == "entry" then
  redis.call("SET", KEYS[1], ARGV[3], "PX", tonumber(ARGV[4]))
elseif ARGV[2] == "outcome" then
  redis.call("SET", KEYS[3], ARGV[3], "PX", tonumber(ARGV[4]))
end
local released = 0
if redis.call("GET", KEYS[2]) == ARGV[1] then
  redis.call("DEL", KEYS[2])
  released = 1
end
local waiters = tonumber(redis.call("GET", KEYS[4]) or "0") or 0
if released == 1 and waiters > 0 then
  redis.call("DEL", KEYS[4])
end
if waiters > 0 then
  redis.call("PUBLISH", ARGV[5], "done")
end
return {released, waiters}
