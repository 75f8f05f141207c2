-- subrange.lua: copy the members of a sorted set whose score lies in [lo, hi], with scores.
-- KEYS[1]  destination sorted set (members are added)
-- KEYS[2]  source sorted set (a scored index)
-- ARGV[1]  lo: inclusive lower bound ('-inf' for open)
-- ARGV[2]  hi: inclusive upper bound ('inf' for open)
-- Returns  the number of members copied: exactly those with lo <= score <= hi (nothing when
--          no member qualifies; reference bug query #4 fixed).
local dest, source = KEYS[1], KEYS[2]
local first = redis.call('ZCOUNT', source, '-inf', '(' .. ARGV[1])
local last = redis.call('ZCOUNT', source, '-inf', ARGV[2]) - 1
local page = 1000
local copied = 0
local i = first
while i <= last do
    local j = i + page - 1
    if j > last then
        j = last
    end
    local items = redis.call('ZRANGE', source, i, j, 'WITHSCORES')
    local n = #items
    if n == 0 then
        break
    end
    local args = {}
    for k = 1, n, 2 do
        args[#args + 1] = items[k + 1]
        args[#args + 1] = items[k]
    end
    redis.call('ZADD', dest, unpack(args))
    copied = copied + n / 2
    i = j + 1
end
return copied
