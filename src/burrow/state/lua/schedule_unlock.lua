-- Give the scheduler leader lock up, only if this token still holds it.
-- KEYS: lock | ARGV: token. Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
