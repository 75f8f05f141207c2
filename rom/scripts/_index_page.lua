-- Shared by the paging scripts (prepended by rom._scripts.lua for a script whose first line
-- is "-- include: _index_page.lua").
-- index_page(key, lo, hi, desc, offset, count): one page of the scored index `key` (a ZSET)
-- in the order the general search path produces (score ascending, or descending when `desc`;
-- ties by member bytes ascending), restricted to lo <= score <= hi (score strings, '-inf' /
-- 'inf' for open ends), starting `offset` (>= 0) members in, `count` members (<= 0: to the
-- end), without building a working set.
-- Returns the members (ids) of the page.
local function index_page(key, lo, hi, desc, offset, count)
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
end
