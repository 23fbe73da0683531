-- A worker shutting down gives back an attempt it could not finish: 'running' -> 'queued',
-- only if it still holds the lease. The message is requeued and runs again elsewhere.
-- KEYS: task, events, running | ARGV: id, token, note
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at', t)
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
redis.call('ZREM', KEYS[3], ARGV[1])
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'queued', attempt = attempts,
  note = ARGV[3]}))
return 1
