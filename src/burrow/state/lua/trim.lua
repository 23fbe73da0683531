-- Drop listing-index entries whose record expired (BURROW_RESULT_TTL). Checked and removed
-- in one step, so an id whose record was just created again keeps its entry.
-- KEYS: index, task_1 .. task_n | ARGV: id_1 .. id_n
-- Returns how many entries were removed.
local removed = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return removed
