-- Model.get() of several ids: every row in one atomic call.
-- KEYS: the row hashes (<ns>:<id>). ARGV: none.
-- Returns one flat HGETALL reply per key, in KEYS order (empty for a missing row).
local rows = {}
for i, key in ipairs(KEYS) do
    rows[i] = redis.call('HGETALL', key)
end
return rows
