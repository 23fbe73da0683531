-- Move a schedule's cursor (the last tick it handled, fired or skipped), fenced by the
-- leader token: a scheduler that lost the lock (paused, partitioned) cannot write any
-- more. The cursor never moves backwards. A fired tick is also kept as "last fired".
-- KEYS: lock, cursors hash, fired hash | ARGV: token, schedule id, tick, fired ('1'/'0')
-- Returns 1 when written (or already at/after tick), 0 when the token is not the holder's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('HGET', KEYS[2], ARGV[2])
if current and tonumber(current) >= tonumber(ARGV[3]) then return 1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]) end
return 1
