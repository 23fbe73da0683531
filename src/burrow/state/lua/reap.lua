-- A running attempt's lease expired (its worker died or froze): back to 'queued'. The
-- broker redelivers the unacked message, and a new attempt takes over with a new lease.
-- KEYS: running, task, events | ARGV: id
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if redis.call('HGET', KEYS[2], 'status') ~= 'running' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local lease_until = tonumber(redis.call('HGET', KEYS[2], 'lease_until') or '0')
if lease_until > now_ms then return 0 end
redis.call('HSET', KEYS[2], 'status', 'queued', 'updated_at', t)
redis.call('HDEL', KEYS[2], 'lease', 'lease_until')
redis.call('ZREM', KEYS[1], ARGV[1])
local attempts = tonumber(redis.call('HGET', KEYS[2], 'attempts') or '0')
redis.call('RPUSH', KEYS[3], cjson.encode({at = t, status = 'queued', attempt = attempts,
  note = 'lease expired: the attempt was lost'}))
return 1
