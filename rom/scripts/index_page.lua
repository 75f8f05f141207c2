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
-- descending scores, but members of equal score stay in ascending byte order. The page's
-- members are those of ranks a .. b (ascending ranks), except in the score groups cut by
-- the page's edges: one ZRANGE of ranks a - 1 .. b + 1 shows whether the edge groups go on
-- past the page, and only such a group is placed exactly (two ZCOUNTs and a ZRANGE).
local a, b = top - offset - count + 1, top - offset
local start = math.max(a - 1, 0)
local got = redis.call('ZRANGE', key, start, b + 1, 'WITHSCORES')
local score_at = {}
local member_at = {}
for i = 1, #got, 2 do
    local rank = start + (i - 1) / 2
    member_at[rank] = got[i]
    score_at[rank] = got[i + 1]
end
-- the groups of ranks a .. b, ascending: {score, first rank, last rank}
local groups = {}
for rank = a, b do
    local g = groups[#groups]
    if g and g[1] == score_at[rank] then
        g[3] = rank
    else
        groups[#groups + 1] = {score_at[rank], rank, rank}
    end
end
local out = {}
for gi = #groups, 1, -1 do
    local g = groups[gi]
    local cut = (gi == #groups and score_at[b + 1] == g[1])
        or (gi == 1 and a - 1 >= start and score_at[a - 1] == g[1])
    if cut then
        local glo = redis.call('ZCOUNT', key, '-inf', '(' .. g[1])
        local ghi = redis.call('ZCOUNT', key, '-inf', g[1]) - 1
        local first_pos = math.max(offset, top - ghi)
        local last_pos = math.min(offset + count - 1, top - glo)
        if last_pos >= first_pos then
            local base = glo - (top - ghi)
            for _, m in ipairs(redis.call('ZRANGE', key, base + first_pos, base + last_pos)) do
                out[#out + 1] = m
            end
        end
    else
        for rank = g[2], g[3] do
            out[#out + 1] = member_at[rank]
        end
    end
end
return out
