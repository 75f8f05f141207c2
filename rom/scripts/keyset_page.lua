-- include: _index_page.lua
-- keyset_page.lua: the page of a scored index that follows a cursor (keyset pagination), in
-- the order index_page.lua reads (score ascending or descending, ties by member bytes
-- ascending). Work is O(log(N)^2 + page) whatever the depth, and a page boundary does not
-- move when entries before it are added or removed.
-- KEYS[1]  the scored index or query result (ZSET)
-- ARGV[1]  lo: inclusive lower score bound ('-inf' for open)
-- ARGV[2]  hi: inclusive upper score bound ('inf' for open)
-- ARGV[3]  '1' for descending score order, '0' for ascending
-- ARGV[4]  the cursor's score (ignored when ARGV[5] is '')
-- ARGV[5]  the cursor's member: the page starts right after (score, member); '' = first page
-- ARGV[6]  count (> 0): the page size
-- Returns  {members of the page, score of the last member or false}.
local key = KEYS[1]
local lo, hi, desc = ARGV[1], ARGV[2], ARGV[3] == '1'
local cscore, cmember, count = ARGV[4], ARGV[5], tonumber(ARGV[6])

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

local offset = 0
if cmember ~= '' then
    local bottom = redis.call('ZCOUNT', key, '-inf', '(' .. lo)
    local top = redis.call('ZCOUNT', key, '-inf', hi) - 1
    -- ranks [glo, ghi) hold the members scored like the cursor; find the first one after it
    local glo = redis.call('ZCOUNT', key, '-inf', '(' .. cscore)
    local ghi = redis.call('ZCOUNT', key, '-inf', cscore)
    local a, b = glo, ghi
    while a < b do
        local mid = math.floor((a + b) / 2)
        if greater(redis.call('ZRANGE', key, mid, mid)[1], cmember) then
            b = mid
        else
            a = mid + 1
        end
    end
    if desc then  -- before the cursor: higher scores, then equal scores up to the cursor
        offset = math.max(0, top - math.max(ghi, bottom) + 1)
            + math.max(0, math.min(a, top + 1) - math.max(glo, bottom))
    else
        offset = math.max(0, math.min(a, top + 1) - bottom)
    end
end
local members = index_page(key, lo, hi, desc, offset, count)
if #members == 0 then
    return {members, false}
end
return {members, redis.call('ZSCORE', key, members[#members])}
