-- An attempt failed and another one is scheduled: 'running' -> 'retrying'. Fenced.
-- KEYS: task, events, running | ARGV: id, token, error, eta, ttl
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'retrying', 'error', ARGV[3], 'eta', ARGV[4],
  'updated_at', t)
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
redis.call('ZREM', KEYS[3], ARGV[1])
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'retrying', attempt = attempts,
  error = cjson.decode(ARGV[3]), eta = tonumber(ARGV[4])}))
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
