-- An operator runs a dead task again (dead-letter replay): 'failed'/'cancelled' -> 'queued'
-- with the run count reset. The only way out of a terminal state, recorded as its own event.
-- KEYS: task, events | ARGV: ttl, note
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'failed' and status ~= 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'updated_at', t)
redis.call('HDEL', KEYS[1], 'result', 'finished_at', 'lease', 'lease_until', 'eta', 'on_dead')
redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'queued', attempt = 0,
  note = ARGV[2]}))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
