-- include: _index_page.lua
-- shard_keyset.lua: one shard's part of a keyset page of a sharded query answered straight
-- from one scored index (rom._shard_query): keyset_page.lua's page, with every score.
-- KEYS[1]  the scored index; ARGV[1] lo, ARGV[2] hi (inclusive score bounds)
-- ARGV[3]  '1' for descending score order, '0' for ascending
-- ARGV[4]  the cursor's score (as the index has it), ARGV[5] its member ('' = first page)
-- ARGV[6]  count (> 0)
-- Returns  flat (member, score) pairs of the page, in the order of the general search path.
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
local out = {}
for _, member in ipairs(members) do
    out[#out + 1] = member
    out[#out + 1] = redis.call('ZSCORE', key, member)
end
return out
