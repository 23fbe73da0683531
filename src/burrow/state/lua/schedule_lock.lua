-- Take or renew the scheduler leader lock (one active scheduler per namespace).
-- A holder that presents its token renews the lock; anyone else gets it only when it is
-- free, with a new fencing token '{n}:{random}' where n grows on every acquisition.
-- KEYS: lock, fence counter | ARGV: token ('' when not holding), ttl_ms, random suffix
-- Returns the token held afterwards, or false when another scheduler holds the lock.
local current = redis.call('GET', KEYS[1])
if ARGV[1] ~= '' and current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return ARGV[1]
end
if current then return false end
local n = redis.call('INCR', KEYS[2])
local token = n .. ':' .. ARGV[3]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
