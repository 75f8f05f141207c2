-- include: _keyset_rank.lua
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
local offset = keyset_offset(key, lo, hi, desc, ARGV[4], ARGV[5])
local members = index_page(key, lo, hi, desc, offset, tonumber(ARGV[6]))
if #members == 0 then
    return {members, false}
end
return {members, redis.call('ZSCORE', key, members[#members])}
