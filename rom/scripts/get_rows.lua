-- Model.get() of several ids: every row in one atomic call.
-- KEYS: the row hashes (<ns>:<id>).
-- ARGV[1] = '0': returns per key its HGETALL reply (empty for a missing row).
-- ARGV[1] = position (1-based) of the primary key among the field names ARGV[2..]: returns
-- per key the HMGET values of those fields (nil for a missing field), or nil when the row
-- does not exist (a row lacking its primary key still returns its values).
local pk = tonumber(ARGV[1])
local rows = {}
for i, key in ipairs(KEYS) do
    if pk == 0 then
        rows[i] = redis.call('HGETALL', key)
    else
        local values = redis.call('HMGET', key, unpack(ARGV, 2))
        if not values[pk] and redis.call('EXISTS', key) == 0 then
            rows[i] = false
        else
            rows[i] = values
        end
    end
end
return rows
