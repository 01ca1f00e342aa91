-- coldstart_mark: record what a target (upstream, model) is doing, unless the news is stale.
--
-- KEYS[1]  the target's state key (a plain string, see gateway/policies/resilience/loading.py):
--            "loading <at> <ready_at> <next_probe> <estimate>"  or  "up <at>"   (wall-clock seconds)
-- ARGV[1]  the new record
-- ARGV[2]  its time to live, in milliseconds
-- ARGV[3]  when the upstream call that learned this news was sent (wall-clock seconds)
-- Returns  1 when written; 0 when a "loading" record was refused because an "up" record written
--          after that call was sent is already there (a late 503 must not park everyone again
--          once a probe has seen the model answer).
-- Lua 5.1 only (Redis), no globals.

local new = ARGV[1]
if string.sub(new, 1, 8) == "loading " then
  local cur = redis.call("GET", KEYS[1])
  if cur then
    local kind, at = string.match(cur, "^(%a+) (%S+)")
    if kind == "up" and tonumber(at) ~= nil and tonumber(at) > tonumber(ARGV[3]) then
      return 0
    end
  end
end
redis.call("SET", KEYS[1], new, "PX", tonumber(ARGV[2]))
return 1
