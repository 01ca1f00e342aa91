-- endpoint_wake: claim THE wake-up of a scaled-to-zero endpoint for this request, and count it.
--
-- KEYS[1]  the endpoint's wake claim key ("<token> <woken_at>", woken_at in wall-clock seconds)
-- KEYS[2]  the endpoint's wake-up counter (every wake-up the fleet started, for /status)
-- ARGV[1]  the claim's value
-- ARGV[2]  the claim's lifetime, in milliseconds (a wake-up that takes longer may be claimed again)
-- ARGV[3]  the counter's time to live, in milliseconds
-- Returns  the fleet's wake-up count including this one when the claim was taken; 0 when another
--          request holds it (that one wakes the endpoint; this one goes elsewhere or parks).
-- Lua 5.1 only (Redis), no globals.

if not redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", tonumber(ARGV[2])) then
  return 0
end
local count = redis.call("INCR", KEYS[2])
redis.call("PEXPIRE", KEYS[2], tonumber(ARGV[3]))
return count
