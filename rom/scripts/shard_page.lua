-- shard_page.lua: one shard's part of a keyset page of a sharded query (rom._shard_query).
-- KEYS[1]  the shard's query result (ZSET, ascending: descending orders have negated scores)
-- ARGV[1]  the cursor's score, ARGV[2] its member ('' = first page), ARGV[3] count (> 0)
-- Returns  the next `count` (member, score) pairs after (score, member), flat (WITHSCORES),
--          in Redis's order: score, then member bytes. Work: O(log(N)^2 + count).
local key, cscore, cmember, count = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])

-- byte-wise a > b (the order Redis keeps members of equal score in)
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

local start = 0
if cmember ~= '' then
    local a = redis.call('ZCOUNT', key, '-inf', '(' .. cscore)
    local b = redis.call('ZCOUNT', key, '-inf', cscore)
    while a < b do
        local mid = math.floor((a + b) / 2)
        if greater(redis.call('ZRANGE', key, mid, mid)[1], cmember) then
            b = mid
        else
            a = mid + 1
        end
    end
    start = a
end
return redis.call('ZRANGE', key, start, start + count - 1, 'WITHSCORES')
