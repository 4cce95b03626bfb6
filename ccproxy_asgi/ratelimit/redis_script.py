"""The Redis store's Lua scripts: one atomic script per decision, per settlement, per observation.

Data of one limiter key K (all under the hash tag `{prefix:K}`, so Redis Cluster keeps them in one slot):

- `{…}:log`  sorted set: one member per request in the window (a reservation id), scored by its
  admission time (the Redis server's clock unless the store was given one).
- `{…}:cost` hash: reservation id -> "tokens input output" (its reserved, later reconciled, cost).
- `{…}:st`   hash: running sums `tok`, `in`, `out` of the live entries; `seq` (id counter); `newest`;
  adaptive state `f` (factor), `pause` (until), `succ`, `ldec` (last decrease), and the debts learned
  from upstream headers `dreq`/`dreq_until`, `dtok`/`dtok_until`.

Per-request entries, never per-token ones: memory is bounded by the requests in the window (at most
the RPM budget, or TPM / smallest cost), each decision is O(log n) plus O(expired entries) amortized,
and an entry can be reconciled or cancelled by id. Time buckets would be smaller but approximate at
their edges and could not reconcile an entry after its bucket moved; the log is exact, and the same
algorithm as the memory store's `WindowLog`, so both stores decide alike.

The scripts mirror `MemoryStore` and `AdaptivePolicy` exactly; a parity test runs one scenario through
both. Unlimited limits are passed as empty strings (`tonumber('')` is nil); Lua floats are returned as
strings because Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

PRELUDE = r"""
local LOG, COST, ST = KEYS[1], KEYS[2], KEYS[3]

local function clock(arg)
  local t = tonumber(arg)
  if t ~= nil and t >= 0 then return t end
  local r = redis.call('TIME')
  return tonumber(r[1]) + tonumber(r[2]) / 1000000
end

local function fmt(x) return string.format('%.6f', x) end

local function parse(v)
  local a, b, c = string.match(v, '^(%d+) (%d+) (%d+)$')
  return tonumber(a), tonumber(b), tonumber(c)
end

local function prune(cutoff)
  local dt, di, dout = 0, 0, 0
  while true do
    local ids = redis.call('ZRANGEBYSCORE', LOG, '-inf', cutoff, 'LIMIT', 0, 256)
    if #ids == 0 then break end
    local vals = redis.call('HMGET', COST, unpack(ids))
    for i = 1, #ids do
      if vals[i] then
        local a, b, c = parse(vals[i])
        dt = dt + a; di = di + b; dout = dout + c
      end
    end
    redis.call('HDEL', COST, unpack(ids))
    redis.call('ZREM', LOG, unpack(ids))
    if #ids < 256 then break end
  end
  if dt ~= 0 or di ~= 0 or dout ~= 0 then
    redis.call('HINCRBY', ST, 'tok', -dt)
    redis.call('HINCRBY', ST, 'in', -di)
    redis.call('HINCRBY', ST, 'out', -dout)
  end
end

local function scale(limit, f)
  if limit == nil then return nil end
  if f >= 1 then return limit end
  return math.max(1, math.floor(limit * f))
end

local function expire(ttl)
  redis.call('PEXPIRE', LOG, ttl)
  redis.call('PEXPIRE', COST, ttl)
  redis.call('PEXPIRE', ST, ttl)
end
"""

ACQUIRE = r"""
-- ARGV: now, window, rpm, tpm, itpm, otpm (configured; '' = unlimited), need_in, need_out, reserve, ttl_ms
local now = clock(ARGV[1])
local window = tonumber(ARGV[2])
local rpm, tpm, itpm, otpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local need_in, need_out = tonumber(ARGV[7]), tonumber(ARGV[8])
local need = need_in + need_out
local cutoff = now - window
prune(cutoff)

local s = redis.call('HMGET', ST, 'tok', 'in', 'out', 'f', 'pause', 'dreq', 'dreq_until', 'dtok',
                     'dtok_until', 'newest')
local tok, inn, outt = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0
local f = tonumber(s[4]) or 1
local pause = tonumber(s[5]) or 0
local dreq_until, dtok_until = tonumber(s[7]) or 0, tonumber(s[9]) or 0
local dreq, dtok = 0, 0
if dreq_until > now then dreq = tonumber(s[6]) or 0 end
if dtok_until > now then dtok = tonumber(s[8]) or 0 end
local newest = tonumber(s[10]) or 0
local count = redis.call('ZCARD', LOG)

local function lone(eff, cfg, n)
  if eff ~= nil and cfg ~= nil and n > eff and n <= cfg then return n end
  return eff
end
local er, et, ei, eo = scale(rpm, f), scale(tpm, f), scale(itpm, f), scale(otpm, f)
local lt, li, lo = lone(et, tpm, need), lone(ei, itpm, need_in), lone(eo, otpm, need_out)

-- Seconds until one more request fits the limits (nil = unlimited); -1 = never.
local function wait_for(lr, lt_, li_, lo_)
  local xr, xt, xi, xo = 0, 0, 0, 0
  if lr ~= nil then
    if lr < 1 then return -1 end
    xr = count + 1 - lr
  end
  if lt_ ~= nil then
    if need > lt_ then return -1 end
    xt = tok + need - lt_
  end
  if li_ ~= nil then
    if need_in > li_ then return -1 end
    xi = inn + need_in - li_
  end
  if lo_ ~= nil then
    if need_out > lo_ then return -1 end
    xo = outt + need_out - lo_
  end
  if xr <= 0 and xt <= 0 and xi <= 0 and xo <= 0 then return 0 end
  local start = 0
  while true do
    local page = redis.call('ZRANGE', LOG, start, start + 127, 'WITHSCORES')
    if #page == 0 then return 0 end
    local ids = {}
    for j = 1, #page, 2 do ids[#ids + 1] = page[j] end
    local vals = redis.call('HMGET', COST, unpack(ids))
    for j = 1, #ids do
      local a, b, c = 0, 0, 0
      if vals[j] then a, b, c = parse(vals[j]) end
      xr = xr - 1; xt = xt - a; xi = xi - b; xo = xo - c
      if xr <= 0 and xt <= 0 and xi <= 0 and xo <= 0 then
        local ts = tonumber(page[2 * j])
        if ts <= cutoff then return 0 end
        return ts - cutoff
      end
    end
    start = start + 128
  end
end

local wait = wait_for(er, lt, li, lo)
if dreq > 0 or dtok > 0 then
  -- Either the request fits with the debt counted, or it waits for the debt to lapse.
  local r2, t2 = er, lt
  if r2 ~= nil then r2 = r2 - dreq end
  if t2 ~= nil then t2 = t2 - dtok end
  local indebted = wait_for(r2, t2, li, lo)
  local expiry = -math.huge
  if dreq > 0 then expiry = dreq_until end
  if dtok > 0 then expiry = math.max(expiry, dtok_until) end
  if wait >= 0 then wait = math.max(wait, expiry - now) end
  if indebted >= 0 and (wait < 0 or indebted < wait) then wait = indebted end
end
local paused = pause - now
if paused > 0 then
  if wait >= 0 then wait = math.max(wait, paused) end
else
  paused = 0
end

local admitted, id = 0, ''
if wait == 0 and ARGV[9] == '1' then
  id = tostring(redis.call('HINCRBY', ST, 'seq', 1))
  redis.call('ZADD', LOG, now, id)
  redis.call('HSET', COST, id, need .. ' ' .. need_in .. ' ' .. need_out)
  tok, inn, outt, count = tok + need, inn + need_in, outt + need_out, count + 1
  newest = now
  redis.call('HSET', ST, 'tok', tok, 'in', inn, 'out', outt, 'newest', newest)
  expire(tonumber(ARGV[10]))
  admitted = 1
end
local reset = 0
if count > 0 then reset = math.max(0, newest + window - now) end
local function n(x) if x == nil then return -1 end return x end
return {admitted, id, fmt(wait), fmt(now), count, tok, inn, outt, n(er), n(et), n(ei), n(eo), fmt(f),
        fmt(reset), fmt(paused), dreq, dtok}
"""

SETTLE = r"""
-- ARGV: now, window, id, cancel, actual_in ('' = keep), actual_out, extra_requests, success,
--       successes_to_increase, increase, ttl_ms
local now = clock(ARGV[1])
prune(now - tonumber(ARGV[2]))
local id = ARGV[3]
local v = redis.call('HGET', COST, id)
if v then
  local a, b, c = parse(v)
  if ARGV[4] == '1' then
    redis.call('HDEL', COST, id)
    redis.call('ZREM', LOG, id)
    redis.call('HINCRBY', ST, 'tok', -a)
    redis.call('HINCRBY', ST, 'in', -b)
    redis.call('HINCRBY', ST, 'out', -c)
  elseif ARGV[5] ~= '' then
    local ni, no = tonumber(ARGV[5]), tonumber(ARGV[6])
    redis.call('HSET', COST, id, (ni + no) .. ' ' .. ni .. ' ' .. no)
    redis.call('HINCRBY', ST, 'tok', ni + no - a)
    redis.call('HINCRBY', ST, 'in', ni - b)
    redis.call('HINCRBY', ST, 'out', no - c)
  end
end
local extra = tonumber(ARGV[7])
for i = 1, extra do
  local xid = tostring(redis.call('HINCRBY', ST, 'seq', 1))
  redis.call('ZADD', LOG, now, xid)
  redis.call('HSET', COST, xid, '0 0 0')
end
if extra > 0 then redis.call('HSET', ST, 'newest', now) end
local f = tonumber(redis.call('HGET', ST, 'f')) or 1
local changed = 0
if ARGV[8] == '1' then
  local succ = redis.call('HINCRBY', ST, 'succ', 1)
  if succ >= tonumber(ARGV[9]) then
    redis.call('HSET', ST, 'succ', 0)
    if f < 1 then
      f = math.min(1, f * tonumber(ARGV[10]))
      redis.call('HSET', ST, 'f', f)
      changed = 1
    end
  end
end
if redis.call('EXISTS', ST) == 1 then expire(tonumber(ARGV[11])) end
return {fmt(f), changed}
"""

OBSERVE = r"""
-- ARGV: now, window, rpm, tpm (configured; '' = unlimited), rate_limited, retry_after (''), admitted_at
--       (''), decrease, min_factor, default_pause, max_pause, remaining_requests (''), remaining_tokens
--       (''), reset_requests (''), reset_tokens (''), use_headers, ttl_ms
local now = clock(ARGV[1])
local window = tonumber(ARGV[2])
prune(now - window)
local s = redis.call('HMGET', ST, 'f', 'pause', 'ldec', 'dreq', 'dreq_until', 'dtok', 'dtok_until', 'tok')
local f = tonumber(s[1]) or 1
local pause = tonumber(s[2]) or 0
local ldec = tonumber(s[3]) or -math.huge
local changed = 0
if tonumber(ARGV[5]) > 0 then
  local at = tonumber(ARGV[7])
  if at == nil or at > ldec then
    f = math.max(tonumber(ARGV[9]), f * tonumber(ARGV[8]))
    ldec = now
    changed = 1
    redis.call('HSET', ST, 'f', f, 'ldec', ldec)
  end
  local p = tonumber(ARGV[6]) or tonumber(ARGV[10])
  p = math.min(math.max(p, 0), tonumber(ARGV[11]))
  pause = math.max(pause, now + p)
  redis.call('HSET', ST, 'pause', pause, 'succ', 0)
end
local function span(reset)
  if reset == nil then return window end
  return math.min(math.max(reset, 0), window)
end
if ARGV[16] == '1' then
  local er, et = scale(tonumber(ARGV[3]), f), scale(tonumber(ARGV[4]), f)
  local rem_req, rem_tok = tonumber(ARGV[12]), tonumber(ARGV[13])
  if er ~= nil and rem_req ~= nil then
    local count = redis.call('ZCARD', LOG)
    local current = 0
    if (tonumber(s[5]) or 0) > now then current = tonumber(s[4]) or 0 end
    if rem_req < er - count - current then
      redis.call('HSET', ST, 'dreq', er - count - math.max(rem_req, 0),
                 'dreq_until', now + span(tonumber(ARGV[14])))
    end
  end
  if et ~= nil and rem_tok ~= nil then
    local tok = tonumber(redis.call('HGET', ST, 'tok')) or 0
    local current = 0
    if (tonumber(s[7]) or 0) > now then current = tonumber(s[6]) or 0 end
    if rem_tok < et - tok - current then
      redis.call('HSET', ST, 'dtok', et - tok - math.max(rem_tok, 0),
                 'dtok_until', now + span(tonumber(ARGV[15])))
    end
  end
end
if redis.call('EXISTS', ST) == 1 then expire(tonumber(ARGV[17])) end
return {fmt(f), changed}
"""

__all__ = ["ACQUIRE", "OBSERVE", "PRELUDE", "SETTLE"]
