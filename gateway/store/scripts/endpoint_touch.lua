-- endpoint_touch: remember the latest moment any replica sent traffic to an endpoint (the idle timer).
--
-- KEYS[1]  the endpoint's last-traffic key (wall-clock seconds, as text)
-- ARGV[1]  when this replica last sent traffic (wall-clock seconds)
-- ARGV[2]  the key's time to live, in milliseconds
-- Returns  the stored moment after this call, as text: the later of the two (a replica that reports
--          late never moves the timer back).
-- Lua 5.1 only (Redis), no globals.

local cur = redis.call("GET", KEYS[1])
if cur and tonumber(cur) ~= nil and tonumber(cur) >= tonumber(ARGV[1]) then
  redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[2]))
  return cur
end
redis.call("SET", KEYS[1], ARGV[1], "PX", tonumber(ARGV[2]))
return ARGV[1]
