-- Record where a task's webhook stands (the record's 'webhook' field, JSON). Never touches
-- the task's status, and never creates a record that expired.
-- KEYS: task | ARGV: webhook id, mode, outcome JSON
-- mode 'enqueue': write unless the field already describes this webhook id (the webhook of
--   this terminal state was enqueued before: a duplicate or a redelivery).
-- mode 'update': write only while the field describes this id and is still 'pending' (a
--   late duplicate attempt cannot overwrite 'delivered' or 'failed').
-- Returns 1 when written, 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[1], 'webhook')
local current = nil
if raw then
  local ok, decoded = pcall(cjson.decode, raw)
  if ok and type(decoded) == 'table' then current = decoded end
end
if ARGV[2] == 'enqueue' then
  if current and current['id'] == ARGV[1] then return 0 end
else
  if not current or current['id'] ~= ARGV[1] or current['status'] ~= 'pending' then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'webhook', ARGV[3])
return 1
