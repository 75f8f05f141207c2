-- include: _keyset_rank.lua
-- shard_keyset.lua: one shard's part of a keyset page of a sharded query answered straight
-- from one scored index (rom._shard_query): keyset_page.lua's page, with every score.
-- KEYS[1]  the scored index; ARGV[1] lo, ARGV[2] hi (inclusive score bounds)
-- ARGV[3]  '1' for descending score order, '0' for ascending
-- ARGV[4]  the cursor's score (as the index has it), ARGV[5] its member ('' = first page)
-- ARGV[6]  count (> 0)
-- Returns  flat (member, score) pairs of the page, in the order of the general search path.
local key = KEYS[1]
local lo, hi, desc = ARGV[1], ARGV[2], ARGV[3] == '1'
local offset = keyset_offset(key, lo, hi, desc, ARGV[4], ARGV[5])
local out = {}
for _, member in ipairs(index_page(key, lo, hi, desc, offset, tonumber(ARGV[6]))) do
    out[#out + 1] = member
    out[#out + 1] = redis.call('ZSCORE', key, member)
end
return out
