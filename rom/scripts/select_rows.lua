-- select_rows.lua: read chosen columns of the rows of a page of ids (for Query.select()).
-- KEYS     none, or KEYS[1] = a sorted set of ids (a query's working set) to read a page from;
--          on Redis Cluster a call with ids gets KEYS[1] = ARGV[1] (only routes the call)
-- ARGV[1]  row key prefix ('<ns>:')
-- ARGV[2]  n: the number of column names that follow
-- ARGV[3 .. 2+n]  column names
-- then     with a working set: start, stop (ZRANGE ranks of the page);
--          otherwise: the ids themselves
-- Returns  {number of ids in the page, row, row, ...}: one row per id whose hash exists, in
--          page order; each row lists the column values (nil for absent fields).
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local columns = {}
for i = 1, n do
    columns[i] = ARGV[2 + i]
end
local ids
if #KEYS > 0 and KEYS[1] ~= prefix then
    ids = redis.call('ZRANGE', KEYS[1], ARGV[3 + n], ARGV[4 + n])
else
    ids = {}
    for i = 3 + n, #ARGV do
        ids[#ids + 1] = ARGV[i]
    end
end
local out = {#ids}
for _, id in ipairs(ids) do
    local key = prefix .. id
    if redis.call('EXISTS', key) == 1 then
        out[#out + 1] = redis.call('HMGET', key, unpack(columns))
    end
end
return out
