-- include: _index_page.lua
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
return index_page(KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4]),
                  tonumber(ARGV[5]))
