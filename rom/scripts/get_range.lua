-- Model.get_by() on a numeric index: the ids in a score range and their rows in one call.
-- KEYS: none (names are derived from the arguments, like the writer)
-- ARGV[1] = index zset (<ns>:<attr>:idx), ARGV[2] = namespace, ARGV[3] = min, ARGV[4] = max,
-- ARGV[5] = offset, ARGV[6] = count ('' for no LIMIT),
-- ARGV[7] = n, the number of field names to read (0: whole rows with HGETALL),
-- ARGV[8] = position (1-based) of the primary key among them, ARGV[9 .. 8+n] = field names.
-- Returns a flat list: every id in score order followed by its row (the HMGET values of the
-- fields, or the HGETALL reply; an empty list when the row is gone).
local n = tonumber(ARGV[7])
local pk = tonumber(ARGV[8])
local function read(key)
    if n == 0 then
        return redis.call('HGETALL', key)
    end
    local values = redis.call('HMGET', key, unpack(ARGV, 9, 8 + n))
    if not values[pk] and redis.call('EXISTS', key) == 0 then
        return {}
    end
    return values
end
local ids
if ARGV[6] ~= '' then
    ids = redis.call('ZRANGEBYSCORE', ARGV[1], ARGV[3], ARGV[4], 'LIMIT', ARGV[5], ARGV[6])
else
    ids = redis.call('ZRANGEBYSCORE', ARGV[1], ARGV[3], ARGV[4])
end
local out = {}
for _, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = read(ARGV[2] .. ':' .. id)
end
return out
