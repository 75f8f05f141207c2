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
    -- descending scores, but members of equal score stay in ascending byte order. The
    -- page's members are those of ranks a .. b (ascending ranks), except in the score groups
    -- cut by the page's edges: one ZRANGE of ranks a - 1 .. b + 1 shows whether the edge
    -- groups go on past the page, and only such a group is placed exactly (two ZCOUNTs and
    -- a ZRANGE).
    local a, b = top - offset - count + 1, top - offset
    local start = math.max(a - 1, 0)
    local got = redis.call('ZRANGE', key, start, b + 1, 'WITHSCORES')
    local score_at, member_at = {}, {}
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
end
