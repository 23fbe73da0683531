-- Create a task record in status 'queued' unless one exists (then return 0); returns the
-- stored created_at (Redis's clock, as written), so a submit can answer with the record as
-- stored.
-- Also indexes it in the listing index (sorted set, score = created_at).
-- KEYS: task, events, index
-- ARGV: id, name, queue, payload, max_retries, trace_id, eta, ttl, callback_url ('' if none)
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'queue', ARGV[3],
  'status', 'queued', 'payload', ARGV[4], 'attempts', 0, 'max_retries', ARGV[5],
  'created_at', t, 'updated_at', t, 'trace_id', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'eta', ARGV[7]) end
if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'callback_url', ARGV[9]) end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'queued', attempt = 0}))
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], t, ARGV[1])
return redis.call('HGET', KEYS[1], 'created_at')
