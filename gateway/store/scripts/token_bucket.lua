-- token_bucket: decide (or settle) several token buckets in one atomic step, all-or-nothing.
--
-- KEYS[i]  one hash per bucket, fields: tk = tokens left (may be negative after a settlement),
--          ts = time of the last refill (seconds). A missing bucket is full.
--          All keys of one call share one hash tag (one Cluster slot); see docs/ratelimits.md.
-- ARGV[1]  now, in seconds; "" = the server's clock (TIME).
-- ARGV[2]  mode: "take"  admit only if every bucket can pay; a denied call changes nothing
--                 "force" apply every cost unconditionally (settling a token estimate, refunds);
--                         costs may be negative (refunds never fill past capacity)
-- ARGV[3..] four numbers per bucket, in KEYS order: rate (tokens/s), capacity, cost, max_wait (s).
--          max_wait > 0 lets a bucket go into debt by up to rate*max_wait: the caller is admitted
--          and must wait before it proceeds (outbound pacing: a queue bounded in time).
-- Returns  {allowed (1|0), wait, remaining_1, ..., remaining_n} (floats as "%.17g" strings):
--          allowed: wait = seconds the caller must wait before proceeding (0 without debt);
--          denied:  wait = seconds until the same call would be admitted (the Retry-After);
--          remaining_i = tokens left in bucket i (after paying, if allowed).
--
-- Time source: Redis TIME by default. Every replica then measures refill on ONE clock, so a skewed
-- host clock can neither mint tokens nor starve a bucket. Tests pass `now` (their fake clock); the
-- in-memory twin (token_bucket.py beside this file) uses the injected clock. Time going backwards
-- (a smaller `now` than a bucket's ts) is clamped: no refill, ts is never moved back.
-- Refill is kept fractional (no rounding to whole tokens) and a denied call never drains.
-- Lua 5.1 only (Redis), no globals.

local now
if ARGV[1] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local force = ARGV[2] == "force"
local n = #KEYS
local tokens, stamps = {}, {}
local allowed = true
local wait, retry = 0, 0

local function fmt(x)
  return string.format("%.17g", x)
end

for i = 1, n do
  local base = 3 + (i - 1) * 4
  local rate, cap = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
  local cost, max_wait = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local state = redis.call("HMGET", KEYS[i], "tk", "ts")
  local tk, ts = tonumber(state[1]), tonumber(state[2])
  if tk == nil or ts == nil then
    tk, ts = cap, now
  end
  if now > ts then
    tk = math.min(cap, tk + (now - ts) * rate)
    ts = now
  end
  tokens[i], stamps[i] = tk, ts
  if not force then
    local need = (cost - tk) / rate  -- seconds until this bucket holds `cost`
    if tk + rate * max_wait < cost then
      allowed = false
    end
    wait = math.max(wait, need)
    retry = math.max(retry, need - max_wait)
  end
end

if not allowed then
  local out = {0, fmt(retry)}
  for i = 1, n do
    out[i + 2] = fmt(tokens[i])
  end
  return out
end

local out = {1, fmt(force and 0 or wait)}
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local rate, cap, cost = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local left = math.min(cap, tokens[i] - cost)
  redis.call("HSET", KEYS[i], "tk", fmt(left), "ts", fmt(stamps[i]))
  -- Gone once it would be full again anyway (plus a second of slack): a full bucket needs no key.
  redis.call("PEXPIRE", KEYS[i], math.ceil((cap - left) / rate * 1000) + 1000)
  out[i + 2] = fmt(left)
end
return out
