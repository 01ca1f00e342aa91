-- endpoint_record: store what the control plane said about an endpoint, unless a newer reading is there.
--
-- KEYS[1]  the endpoint's record key: "<checked_at> <json>" (checked_at: wall-clock seconds when the
--          reading was asked for; see gateway/policies/endpoints/record.py)
-- ARGV[1]  the new record, in that form
-- ARGV[2]  its time to live, in milliseconds
-- Returns  1 when written; 0 when the stored record was asked for later than this one (two replicas
--          read the control plane at once: the later reading wins, whichever answer lands last).
-- Lua 5.1 only (Redis), no globals.

local new_at = tonumber(string.match(ARGV[1], "^(%S+) "))
local cur = redis.call("GET", KEYS[1])
if cur then
  local cur_at = tonumber(string.match(cur, "^(%S+) "))
  if cur_at ~= nil and new_at ~= nil and cur_at > new_at then
    return 0
  end
end
redis.call("SET", KEYS[1], ARGV[1], "PX", tonumber(ARGV[2]))
return 1
