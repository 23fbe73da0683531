-- Begin an attempt: take the lease and count the run, or say why not.
-- KEYS: task, events, running, index
-- ARGV: id, token, lease_ms, worker, max_runs, name, queue, payload, trace_id, ttl
-- Returns {code, attempts, extra}: code is 'run' (extra = the record's created_at, for the
-- queue-wait metric), 'terminal' (extra = status), 'busy' (extra = ms left on the other
-- attempt's lease) or 'exhausted'.
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  -- No record: a foreign producer's task, or Redis lost its data. Create it so the task
  -- still reaches a terminal state.
  status = 'queued'
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[6], 'queue', ARGV[7],
    'status', status, 'payload', ARGV[8], 'attempts', 0, 'max_retries', tonumber(ARGV[5]) - 1,
    'created_at', t, 'trace_id', ARGV[9])
  redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'queued', attempt = 0,
    note = 'record created by the worker'}))
  redis.call('ZADD', KEYS[4], t, ARGV[1])
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return {'terminal', attempts, status}
end
if status == 'running' then
  local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
  if lease_until > now_ms then return {'busy', attempts, tostring(lease_until - now_ms)} end
end
if attempts >= tonumber(ARGV[5]) then return {'exhausted', attempts, ''} end
attempts = attempts + 1
local lease_until = now_ms + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', attempts, 'started_at', t,
  'updated_at', t, 'lease', ARGV[2], 'lease_until', lease_until, 'worker', ARGV[4])
redis.call('ZADD', KEYS[3], lease_until, ARGV[1])
redis.call('RPUSH', KEYS[2], cjson.encode({at = t, status = 'running', attempt = attempts,
  worker = ARGV[4]}))
redis.call('EXPIRE', KEYS[1], ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[10])
return {'run', attempts, redis.call('HGET', KEYS[1], 'created_at') or ''}
