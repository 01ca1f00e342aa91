-- coldstart_release: give up the probe lock of a target, only if this request still holds it.
--
-- KEYS[1]  the target's probe lock key
-- ARGV[1]  the exact value this request stored when it took the lock ("<token> <since>")
-- Returns  1 when the lock was deleted; 0 when it had expired or another request holds it now
--          (its lease ran out and someone else took over: their lock must survive).
-- Lua 5.1 only (Redis), no globals.

if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
