-- include: _read_row.lua
-- Model.get_by() on a numeric index: the ids in a score range and their rows in one call.
-- KEYS: none (names are derived from the arguments, like the writer)
-- ARGV[1] = index zset (<ns>:<attr>:idx), ARGV[2] = namespace, ARGV[3] = min, ARGV[4] = max,
-- ARGV[5] = offset, ARGV[6] = count ('' for no LIMIT), ARGV[7 ..] = what to read of each
-- row (see read_row: n, primary key position, n field names).
-- Returns a flat list: every id in score order followed by its row (an empty list when the
-- row is gone).
local ids
if ARGV[6] ~= '' then
    ids = redis.call('ZRANGEBYSCORE', ARGV[1], ARGV[3], ARGV[4], 'LIMIT', ARGV[5], ARGV[6])
else
    ids = redis.call('ZRANGEBYSCORE', ARGV[1], ARGV[3], ARGV[4])
end
local out = {}
for _, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = read_row(ARGV[2] .. ':' .. id, 7) or {}
end
return out
