-- Extend the leases of running attempts that still hold them.
-- KEYS: running, task_1 .. task_n | ARGV: lease_ms, id_1, token_1, ..., id_n, token_n
-- Returns how many leases were extended.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease_until = now_ms + tonumber(ARGV[1])
local renewed = 0
for i = 2, #KEYS do
  local id = ARGV[(i - 2) * 2 + 2]
  local token = ARGV[(i - 2) * 2 + 3]
  if redis.call('HGET', KEYS[i], 'lease') == token then
    redis.call('HSET', KEYS[i], 'lease_until', lease_until)
    redis.call('ZADD', KEYS[1], lease_until, id)
    renewed = renewed + 1
  end
end
return renewed
