-- An operator runs a dead task again (dead-letter replay, Burrow.retry): 'failed' or
-- 'cancelled' -> 'queued' with the run count reset. The only way out of a terminal state,
-- recorded as its own event. The previous run's result and error are cleared (the history
-- keeps them).
-- KEYS: task, events | ARGV: ttl, note
-- Returns {1, previous status, payload, name, queue, trace_id, previous error} when
-- reopened, {0, status} when the status does not allow it, {0} when there is no record.
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0} end
if status ~= 'failed' and status ~= 'cancelled' then return {0, status} end
local f = redis.call('HMGET', KEYS[1], 'payload', 'name', 'queue', 'trace_id', 'error')
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'updated_at', t)
redis.call('HDEL', KEYS[1], 'result', 'error', 'finished_at', 'lease', 'lease_until', 'eta',
  'on_dead')
redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'queued', attempt = 0,
  note = ARGV[2]}))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return {1, status, f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or ''}
