-- Reserve the earliest start slot of a rate-limited task (GCRA without burst).
-- KEYS: limiter (the theoretical arrival time, ms), task record
-- ARGV: interval_ms (float: period / count)
-- Returns the wait in ms (text, 0 = start now). Starts are spaced interval_ms apart, so
-- any window of the period holds at most count of them. Each call reserves the slot it
-- returns: the caller must start at (or after) it, or the slot is lost.
-- No slot is reserved for a task that will not run now: a terminal record (a duplicate
-- or a cancelled task) or one whose live lease another attempt holds (start.lua sends it
-- on as 'busy'). A waiting task's due time is written to its record's 'eta'.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return '0' end
if status == 'running' then
  local lease_until = tonumber(redis.call('HGET', KEYS[2], 'lease_until') or '0')
  if lease_until > now_ms then return '0' end
end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now_ms, tat)
local next_tat = slot + interval
-- Idle limiters disappear: once next_tat is past, a missing key means the same thing.
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX',
  math.ceil(next_tat - now_ms) + 1000)
local wait = slot - now_ms
if wait > 0 and status then
  redis.call('HSET', KEYS[2], 'eta', string.format('%.3f', slot / 1000))
end
return string.format('%.3f', wait)
