-- Shared by the reading scripts (prepended by rom._scripts.lua for a script whose first line
-- is "-- include: _read_row.lua").
-- read_row(key, base): the row at `key` as the caller asked for it in ARGV[base ..]:
-- ARGV[base] = n, the number of field names to read (0: the whole row, HGETALL),
-- ARGV[base + 1] = position (1-based) of the primary key among them,
-- ARGV[base + 2 .. base + 1 + n] = the model's field names.
-- Returns the HMGET values (nil for a missing field), or false when the row does not exist
-- (a row lacking its primary key still returns its values); with n = 0 the HGETALL reply.
local read_base, read_n, read_pk = nil, 0, 0
local function read_row(key, base)
    if base ~= read_base then  -- the counts are converted once per call
        read_base, read_n, read_pk = base, tonumber(ARGV[base]), tonumber(ARGV[base + 1])
    end
    local n = read_n
    if n == 0 then
        return redis.call('HGETALL', key)
    end
    local values = redis.call('HMGET', key, unpack(ARGV, base + 2, base + 1 + n))
    if not values[read_pk] and redis.call('EXISTS', key) == 0 then
        return false
    end
    return values
end
