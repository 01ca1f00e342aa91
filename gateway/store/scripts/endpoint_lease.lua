-- endpoint_lease: take the right to poll an endpoint's control plane for the fleet, or renew it.
--
-- KEYS[1]  the endpoint's poller lease key
-- ARGV[1]  this replica's token
-- ARGV[2]  the lease, in milliseconds
-- Returns  1 when this replica holds the lease now (renewed, or taken because it was free); 0 when
--          another replica holds it (that one polls; this one reads the shared record).
-- Lua 5.1 only (Redis), no globals.

local cur = redis.call("GET", KEYS[1])
if cur == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[2]))
  return 1
end
if cur then
  return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", tonumber(ARGV[2]))
return 1
