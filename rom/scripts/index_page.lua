-- index_page.lua: one page of a query answered straight from one scored index, in the order
-- the general search path produces (score ascending or descending, ties by member bytes
-- ascending), without building a working set.
-- KEYS[1]  the scored index (ZSET '<ns>:<attr>:idx')
-- ARGV[1]  lo: inclusive lower score bound ('-inf' for open)
-- ARGV[2]  hi: inclusive upper score bound ('inf' for open)
-- ARGV[3]  '1' for descending score order, '0' for ascending
-- ARGV[4]  offset (>= 0) into the ordered members with lo <= score <= hi
-- ARGV[5]  count (<= 0: to the end)
-- Returns  the members (ids) of the page.
local key = KEYS[1]
local lo, hi, desc = ARGV[1], ARGV[2], ARGV[3] == '1'
local offset, count = tonumber(ARGV[4]), tonumber(ARGV[5])
local bottom = redis.call('ZCOUNT', key, '-inf', '(' .. lo)
local top = redis.call('ZCOUNT', key, '-inf', hi) - 1
local total = top - bottom + 1
if total <= 0 or offset >= total then
    return {}
end
if count <= 0 or offset + count > total then
    count = total - offset
end
if not desc then
    return redis.call('ZRANGE', key, bottom + offset, bottom + offset + count - 1)
end
-- descending scores, but members of equal score stay in ascending byte order
local out = {}
local p = offset
while count > 0 do
    local r = top - p
    if r < bottom then
        break
    end
    local score = redis.call('ZRANGE', key, r, r, 'WITHSCORES')[2]
    local glo = redis.call('ZCOUNT', key, '-inf', '(' .. score)
    local ghi = redis.call('ZCOUNT', key, '-inf', score) - 1
    local first = glo + (p - (top - ghi))
    local last = math.min(ghi, first + count - 1)
    local members = redis.call('ZRANGE', key, first, last)
    if #members == 0 then
        break
    end
    for _, m in ipairs(members) do
        out[#out + 1] = m
    end
    p = p + #members
    count = count - #members
end
return out
