-- Model.get_by() on a unique column: look the values up and read their rows in one call.
-- KEYS: none (like the writer, names are derived from the namespace)
-- ARGV[1] = unique index hash (<ns>:<attr>:uidx), ARGV[2] = namespace,
-- ARGV[3] = n, the number of field names to read (0: whole rows with HGETALL),
-- ARGV[4] = position (1-based) of the primary key among them, ARGV[5 .. 4+n] = field names,
-- then the values to look up.
-- Returns a flat list: for every value found, its id followed by its row (the HMGET values
-- of the fields, or the HGETALL reply; an empty list when the row is gone). Values not in
-- the index are skipped.
local n = tonumber(ARGV[3])
local pk = tonumber(ARGV[4])
local function read(key)
    if n == 0 then
        return redis.call('HGETALL', key)
    end
    local values = redis.call('HMGET', key, unpack(ARGV, 5, 4 + n))
    if not values[pk] and redis.call('EXISTS', key) == 0 then
        return {}
    end
    return values
end
local out = {}
for i = 5 + n, #ARGV do
    local id = redis.call('HGET', ARGV[1], ARGV[i])
    if id then
        out[#out + 1] = id
        out[#out + 1] = read(ARGV[2] .. ':' .. id)
    end
end
return out
