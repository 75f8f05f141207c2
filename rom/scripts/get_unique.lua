-- Model.get_by() on a unique column: look the values up and read their rows in one call.
-- KEYS: none (like the writer, names are derived from the namespace)
-- ARGV[1] = unique index hash (<ns>:<attr>:uidx), ARGV[2] = namespace, ARGV[3..] = values
-- Returns a flat list: for every value found, its id followed by HGETALL of <ns>:<id>
-- (an empty list when the row is gone). Values not in the index are skipped.
local out = {}
for i = 3, #ARGV do
    local id = redis.call('HGET', ARGV[1], ARGV[i])
    if id then
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGETALL', ARGV[2] .. ':' .. id)
    end
end
return out
