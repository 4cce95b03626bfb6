"""The breaker's transitions as one Redis Lua script, so every decision is atomic across processes.

It mirrors `_machine.py` rule for rule (the shared store tests run both). KEYS[1] is the key's hash
(scalar fields and the window buckets), KEYS[2] the sorted set of probe tokens scored by lease expiry,
KEYS[3] the sorted set of recently failed request fingerprints scored by when they are forgotten; all
carry the same hash tag so Redis Cluster keeps them on one slot. ARGV: op, now, the policy, then the
op's own arguments. Numbers go back to Python as strings: Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

BREAKER_SCRIPT = r"""
local hkey, pkey, fkey = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local ratio = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local min_requests = tonumber(ARGV[6])
local recovery = tonumber(ARGV[7])
local growth = tonumber(ARGV[8])
local max_recovery = tonumber(ARGV[9])
local max_probes = tonumber(ARGV[10])
local needed = tonumber(ARGV[11])
local lease = tonumber(ARGV[12])
local busy = tonumber(ARGV[13])
local probe_interval = tonumber(ARGV[14])
local repeat_memory = tonumber(ARGV[15])
local ttl_ms = tonumber(ARGV[16])
local NB = 10
local MAX_FAILED = 256

local function fmt(x) return string.format('%.17g', x) end

local h = {}
local raw = redis.call('HGETALL', hkey)
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local state = h['state'] or 'closed'
local epoch = tonumber(h['epoch'] or '0')
local cf = tonumber(h['cf'] or '0')
local open_until = tonumber(h['ou'] or '0')
local trips = tonumber(h['trips'] or '0')
local succ = tonumber(h['succ'] or '0')
local last_probe = tonumber(h['lp'] or '-1e308')
local dirty = false

local width = window / NB
local function bucket_id(t) return math.floor(t / width) end

local function window_counts()
  local oldest = bucket_id(now) - NB + 1
  local total, failures = 0, 0
  for i = 0, NB - 1 do
    if tonumber(h['b' .. i] or '-1') >= oldest then
      total = total + tonumber(h['n' .. i] or '0')
      failures = failures + tonumber(h['f' .. i] or '0')
    end
  end
  return total, failures
end

local function count(failed)
  local id = bucket_id(now)
  local slot = id % NB
  local n, f = 0, 0
  if tonumber(h['b' .. slot] or '-1') == id then
    n = tonumber(h['n' .. slot] or '0')
    f = tonumber(h['f' .. slot] or '0')
  end
  if failed then f = f + 1 end
  h['b' .. slot] = fmt(id)
  h['n' .. slot] = fmt(n + 1)
  h['f' .. slot] = fmt(f)
  dirty = true
end

local function reset_counts()
  cf = 0
  succ = 0
  redis.call('DEL', pkey)
  for i = 0, NB - 1 do
    h['b' .. i] = '-1'
    h['n' .. i] = '0'
    h['f' .. i] = '0'
  end
  dirty = true
end

local function trip(reason)
  local from = state
  trips = trips + 1
  local delay = recovery * growth ^ (trips - 1)
  if delay > max_recovery then delay = max_recovery end
  state = 'open'
  epoch = epoch + 1
  open_until = now + delay
  last_probe = now
  reset_counts()
  return {from, 'open', reason, fmt(delay)}
end

local function close()
  local from = state
  state = 'closed'
  epoch = epoch + 1
  trips = 0
  reset_counts()
  return {from, 'closed', string.format('%d probes succeeded', needed), '0'}
end

local function known_failure(fp)
  if fp == '' then return false end
  local expires = redis.call('ZSCORE', fkey, fp)
  return expires ~= false and tonumber(expires) > now
end

local function remember_failure(fp)
  if fp == '' or repeat_memory <= 0 then return end
  redis.call('ZREMRANGEBYSCORE', fkey, '-inf', fmt(now))
  redis.call('ZADD', fkey, fmt(now + repeat_memory), fp)
  local extra = redis.call('ZCARD', fkey) - MAX_FAILED
  if extra > 0 then redis.call('ZPOPMIN', fkey, extra) end
  redis.call('PEXPIRE', fkey, ttl_ms)
end

local function should_trip()
  local total, failures = window_counts()
  local busy_window = ratio > 0 and total >= min_requests
  local mostly_failing = busy_window and failures >= ratio * total
  if cf >= threshold and ((not busy_window) or mostly_failing) then
    return string.format('%d consecutive failures', cf)
  end
  if mostly_failing then
    return string.format('%d of %d requests failed', failures, total)
  end
  return nil
end

local function save()
  if not dirty then return end
  local fields = {'state', state, 'epoch', fmt(epoch), 'cf', fmt(cf), 'ou', fmt(open_until),
                  'trips', fmt(trips), 'succ', fmt(succ), 'lp', fmt(last_probe), 'key', ARGV[#ARGV]}
  for i = 0, NB - 1 do
    local b, n, f = 'b' .. i, 'n' .. i, 'f' .. i
    table.insert(fields, b); table.insert(fields, h[b] or '-1')
    table.insert(fields, n); table.insert(fields, h[n] or '0')
    table.insert(fields, f); table.insert(fields, h[f] or '0')
  end
  redis.call('HSET', hkey, unpack(fields))
  redis.call('PEXPIRE', hkey, ttl_ms)
  if redis.call('EXISTS', pkey) == 1 then redis.call('PEXPIRE', pkey, ttl_ms) end
end

local none = {'', '', '', '0'}

-- A probe if a slot is free (and, while still open, the probe interval passed): {allowed, retry_after}.
local function probe(token, fp)
  local opened_for = 0
  if state == 'open' and open_until > now then opened_for = open_until - now end
  if known_failure(fp) then
    return 0, math.max(busy, opened_for)
  end
  redis.call('ZREMRANGEBYSCORE', pkey, '-inf', fmt(now))
  if redis.call('ZCARD', pkey) >= max_probes then
    return 0, busy
  end
  if state == 'open' then
    local next_probe = last_probe + probe_interval
    if now < next_probe then
      return 0, math.min(opened_for, next_probe - now)
    end
    last_probe = now
    dirty = true
  end
  redis.call('ZADD', pkey, fmt(now + lease), token)
  redis.call('PEXPIRE', pkey, ttl_ms)
  return 1, 0
end

if op == 'acquire' then
  local token, fp, alone = ARGV[17], ARGV[18], ARGV[19] == '1'
  local tr = none
  local allowed, retry_after = 1, 0
  if state == 'open' then
    if now < open_until then
      if not alone then
        return {0, state, fmt(epoch), fmt(open_until - now), '', '', '', '0'}
      end
      allowed, retry_after = probe(token, fp)
      save()
      return {allowed, state, fmt(epoch), fmt(retry_after), '', '', '', '0'}
    end
    -- Probes let through while open keep their slots (and their epoch): they are half-open probes now.
    state = 'half_open'
    succ = 0
    dirty = true
    tr = {'open', 'half_open', 'recovery timeout elapsed', '0'}
  end
  if state == 'half_open' then
    allowed, retry_after = probe(token, fp)
  end
  save()
  return {allowed, state, fmt(epoch), fmt(retry_after), tr[1], tr[2], tr[3], tr[4]}
end

if op == 'record' then
  local outcome, ticket_epoch, probe_token, fp = ARGV[17], tonumber(ARGV[18]), ARGV[19], ARGV[20]
  local tr = none
  if ticket_epoch == epoch then
    if outcome == 'failure' or outcome == 'request_error' then
      local repeated = known_failure(fp)
      remember_failure(fp)
      if repeated then outcome = 'neutral' end
    end
    if state == 'closed' then
      if outcome ~= 'neutral' then
        count(outcome ~= 'success')
        if outcome == 'success' then
          cf = 0
        else
          if outcome == 'failure' then cf = cf + 1 end
          local reason = should_trip()
          if reason then tr = trip(reason) end
        end
      end
    elseif probe_token ~= '' then
      redis.call('ZREM', pkey, probe_token)
      if outcome == 'failure' and state == 'half_open' then
        tr = trip('a half-open probe failed')
      elseif outcome == 'success' then
        succ = succ + 1
        dirty = true
        if succ >= needed then tr = close() end
      end
    end
  end
  save()
  return {state, fmt(epoch), tr[1], tr[2], tr[3], tr[4]}
end

if op == 'snapshot' then
  local retry_after = 0
  local probes = redis.call('ZCOUNT', pkey, '(' .. fmt(now), '+inf')
  if state == 'open' then
    if now < open_until then
      retry_after = open_until - now
    else
      state, probes, succ = 'half_open', 0, 0
    end
  end
  local total, failures = window_counts()
  return {state, fmt(retry_after), fmt(cf), fmt(total), fmt(failures), fmt(probes), fmt(succ),
          fmt(trips), fmt(epoch)}
end

return redis.error_reply('unknown breaker op ' .. tostring(op))
"""

__all__ = ["BREAKER_SCRIPT"]
