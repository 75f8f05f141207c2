-- include: _keyset_rank.lua
-- shard_page.lua: one shard's part of a keyset page of a sharded query (rom._shard_query).
-- KEYS[1]  the shard's query result (ZSET, ascending: descending orders have negated scores)
-- ARGV[1]  the cursor's score, ARGV[2] its member ('' = first page), ARGV[3] count (> 0)
-- Returns  the next `count` (member, score) pairs after (score, member), flat (WITHSCORES),
--          in Redis's order: score, then member bytes. Work: O(log(N)^2 + count).
local key, cscore, cmember, count = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local start = 0
if cmember ~= '' then
    start = rank_after(key, redis.call('ZCOUNT', key, '-inf', '(' .. cscore),
                       redis.call('ZCOUNT', key, '-inf', cscore), cmember)
end
return redis.call('ZRANGE', key, start, start + count - 1, 'WITHSCORES')
