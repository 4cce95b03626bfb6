"""The breaker's transitions as one Redis Lua script, so every decision is atomic across processes.

It mirrors `_machine.py` rule for rule (the shared store tests run both). KEYS[1] is the key's hash
(scalar fields and the window buckets), KEYS[2] the sorted set of probe tokens scored by lease expiry;
both carry the same hash tag so Redis Cluster keeps them on one slot. ARGV: op, now, the policy, then the
op's own arguments. Numbers go back to Python as strings: Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

BREAKER_SCRIPT = r"""
local hkey, pkey = KEYS[1], KEYS[2]
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
local ttl_ms = tonumber(ARGV[14])
local NB = 10

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
  reset_counts()
  return {from, 'open', reason, fmt(delay)}
end

local function save()
  if not dirty then return end
  local fields = {'state', state, 'epoch', fmt(epoch), 'cf', fmt(cf), 'ou', fmt(open_until),
                  'trips', fmt(trips), 'succ', fmt(succ), 'key', ARGV[#ARGV]}
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

if op == 'acquire' then
  local token = ARGV[15]
  local tr = none
  if state == 'open' then
    if now < open_until then
      return {0, state, fmt(epoch), fmt(open_until - now), '', '', '', '0'}
    end
    state = 'half_open'
    epoch = epoch + 1
    reset_counts()
    tr = {'open', 'half_open', 'recovery timeout elapsed', '0'}
  end
  local allowed, retry_after = 1, 0
  if state == 'half_open' then
    redis.call('ZREMRANGEBYSCORE', pkey, '-inf', fmt(now))
    if redis.call('ZCARD', pkey) >= max_probes then
      allowed, retry_after = 0, busy
    else
      redis.call('ZADD', pkey, fmt(now + lease), token)
      redis.call('PEXPIRE', pkey, ttl_ms)
    end
  end
  save()
  return {allowed, state, fmt(epoch), fmt(retry_after), tr[1], tr[2], tr[3], tr[4]}
end

if op == 'record' then
  local outcome, ticket_epoch, probe = ARGV[15], tonumber(ARGV[16]), ARGV[17]
  local tr = none
  if ticket_epoch == epoch then
    if state == 'closed' then
      if outcome ~= 'neutral' then
        count(outcome == 'failure')
        if outcome == 'success' then
          cf = 0
        else
          cf = cf + 1
          if cf >= threshold then
            tr = trip(string.format('%d consecutive failures', cf))
          elseif ratio > 0 then
            local total, failures = window_counts()
            if total >= min_requests and failures >= ratio * total then
              tr = trip(string.format('%d of %d requests failed', failures, total))
            end
          end
        end
      end
    elseif state == 'half_open' and probe ~= '' then
      redis.call('ZREM', pkey, probe)
      if outcome == 'failure' then
        tr = trip('a half-open probe failed')
      elseif outcome == 'success' then
        succ = succ + 1
        dirty = true
        if succ >= needed then
          state = 'closed'
          epoch = epoch + 1
          trips = 0
          reset_counts()
          tr = {'half_open', 'closed', string.format('%d probes succeeded', needed), '0'}
        end
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
