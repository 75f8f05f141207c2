-- include: _read_row.lua
-- Model.get_by() on a unique column: look the values up and read their rows in one call.
-- KEYS: none (like the writer, names are derived from the namespace)
-- ARGV[1] = unique index hash (<ns>:<attr>:uidx), ARGV[2] = namespace, ARGV[3 ..] = what to
-- read of each row (see read_row: n, primary key position, n field names), then the values
-- to look up.
-- Returns a flat list: for every value found, its id followed by its row (an empty list when
-- the row is gone). Values not in the index are skipped.
local first_value = 5 + tonumber(ARGV[3])
local out = {}
for i = first_value, #ARGV do
    local id = redis.call('HGET', ARGV[1], ARGV[i])
    if id then
        out[#out + 1] = id
        out[#out + 1] = read_row(ARGV[2] .. ':' .. id, 3) or {}
    end
end
return out
