-- include: _index_page.lua
-- shard_top.lua: one shard's first entries of a query answered straight from one scored
-- index (rom._shard_query), with the scores the merge orders by.
-- KEYS[1]  the scored index; ARGV[1] lo, ARGV[2] hi (inclusive score bounds, '-inf'/'inf')
-- ARGV[3]  '1' for descending score order, '0' for ascending; ARGV[4] count (> 0)
-- Returns  flat (member, score) pairs in the order of the general search path (the caller
--          negates the scores of a descending order, as its working set has them).
local members = index_page(KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1', 0, tonumber(ARGV[4]))
local out = {}
for _, member in ipairs(members) do
    out[#out + 1] = member
    out[#out + 1] = redis.call('ZSCORE', KEYS[1], member)
end
return out
