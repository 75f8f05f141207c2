-- estimate_work.lua: estimated cost of one query filter (used to order the filters).
-- KEYS[1]  the filter's index key (SET, ZSET, or GEO ZSET ending in ':geo')
-- ARGV     none | count (geo: candidates limit, optional) | lo, hi (score bounds; hi may be
--          exclusive '(x'; '-inf'/'inf' for open ends)
-- Returns  integer: 0 when the key is missing or of another type; SCARD for sets; for geo
--          keys min(ZCARD, count); for ranges -2r (extracting the range is cheaper) or the
--          (doubled for ':idx' keys) size; ZCARD without bounds.
local key = KEYS[1]
local kind = redis.call('TYPE', key)
if type(kind) == 'table' then kind = kind['ok'] end
if kind == 'set' then
    return redis.call('SCARD', key)
end
if kind ~= 'zset' then
    return 0
end
local size = redis.call('ZCARD', key)
if string.sub(key, -4) == ':geo' then
    local count = tonumber(ARGV[1])
    if count and count > 0 and count < size then
        return count
    end
    return size
end
if #ARGV < 2 then
    return size
end
local lo = ARGV[1]
if string.sub(lo, 1, 1) ~= '(' then
    lo = '(' .. lo
end
local s = redis.call('ZCOUNT', key, '-inf', lo)
if s >= size then
    s = 0
end
local e = redis.call('ZCOUNT', key, '-inf', ARGV[2]) - 1
local r = e - s + 1
if r < 0 then
    r = 0
end
if string.sub(key, -4) == ':idx' then
    size = 2 * size - r
end
if 2 * r < size then
    return -2 * r
end
return size
