-- Move a task to a terminal state, once. Fenced: with a token, only the attempt holding
-- the lease may write (a zombie's late write is refused).
-- KEYS: task, events, running
-- ARGV: id, token, status, result, error, ttl, channel, reason
-- Returns 1 when written, 0 when fenced or already terminal.
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', t, 'updated_at', t)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
redis.call('HDEL', KEYS[1], 'lease', 'lease_until', 'eta')
redis.call('ZREM', KEYS[3], ARGV[1])
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local event = {at = t, status = ARGV[3], attempt = attempts}
if ARGV[5] ~= '' then event['error'] = cjson.decode(ARGV[5]) end
if ARGV[8] ~= '' then event['note'] = ARGV[8] end
redis.call('RPUSH', KEYS[2], cjson.encode(event))
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[1] .. ':' .. ARGV[3])
return 1
