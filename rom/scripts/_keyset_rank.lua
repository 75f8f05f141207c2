-- include: _index_page.lua
-- _keyset_rank.lua (shared): where a keyset cursor (score, member) falls in a scored index,
-- in Redis's order (score, then member bytes). Included by keyset_page.lua, shard_keyset.lua
-- and shard_page.lua.

-- byte-wise a > b (the order Redis keeps members of equal score in; no locale involved)
local function greater(a, b)
    local n = math.min(#a, #b)
    for i = 1, n do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then
            return x > y
        end
    end
    return #a > #b
end

-- the rank of the first member after `cmember` among ranks [a, b) (the members scored like
-- the cursor): a binary search, O(log(N)^2)
local function rank_after(key, a, b, cmember)
    while a < b do
        local mid = math.floor((a + b) / 2)
        if greater(redis.call('ZRANGE', key, mid, mid)[1], cmember) then
            b = mid
        else
            a = mid + 1
        end
    end
    return a
end

-- how many members of the score range [lo, hi], read in index_page's order (ascending or
-- descending score, ties by member bytes), come before the page that follows the cursor
local function keyset_offset(key, lo, hi, desc, cscore, cmember)
    if cmember == '' then
        return 0
    end
    local bottom = redis.call('ZCOUNT', key, '-inf', '(' .. lo)
    local top = redis.call('ZCOUNT', key, '-inf', hi) - 1
    local glo = redis.call('ZCOUNT', key, '-inf', '(' .. cscore)
    local ghi = redis.call('ZCOUNT', key, '-inf', cscore)
    local a = rank_after(key, glo, ghi, cmember)
    if desc then  -- before the cursor: higher scores, then equal scores up to the cursor
        return math.max(0, top - math.max(ghi, bottom) + 1)
            + math.max(0, math.min(a, top + 1) - math.max(glo, bottom))
    end
    return math.max(0, math.min(a, top + 1) - bottom)
end
