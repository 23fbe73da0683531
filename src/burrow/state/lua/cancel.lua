-- Cancel a task on request: 'queued'/'retrying'/'running' -> 'cancelled' (terminal,
-- write-once). Clears the lease, so the running attempt (if any) can no longer renew it or
-- write an outcome; the message still queued or delayed is acked unrun by start.lua.
-- KEYS: task, events, running | ARGV: id, channel, note, ttl
-- Returns {'cancelled', previous status, lease token of the running attempt or ''},
-- {'terminal', status} when already finished, or {'missing'}.
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return {'terminal', status}
end
local lease = redis.call('HGET', KEYS[1], 'lease') or ''
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', t, 'updated_at', t)
redis.call('HDEL', KEYS[1], 'lease', 'lease_until', 'eta')
redis.call('ZREM', KEYS[3], ARGV[1])
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'cancelled', attempt = attempts,
  note = ARGV[3]}))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[2], ARGV[1] .. ':cancelled')
return {'cancelled', status, lease}
