-- include: _like_match.lua
-- prefix_scan.lua: ids of a prefix/suffix index ('token \0 id' members) whose token starts
-- with a literal prefix and, in pattern mode, matches a like() pattern; union (first filter)
-- or intersect them into the query's working set.
-- KEYS[1]  dest: the working set (a sorted set of ids)
-- KEYS[2]  scratch key (created and deleted in this call; used when intersecting)
-- KEYS[3]  the ':pre' or ':suf' index
-- ARGV[1]  start: _prefix_score(literal prefix)
-- ARGV[2]  end: score above every token starting with the prefix, or 'inf' for an empty
--          prefix (the scan then runs to the end of the index)
-- ARGV[3]  the literal prefix bytes (may be empty)
-- ARGV[4]  the like() pattern ('?' zero or one byte, '*' any bytes, '+' one or more, '!'
--          exactly one, anything else literal) matched against the start of each token
--          ('' in prefix mode), by like_matcher (_like_match.lua): never a Lua pattern,
--          bounded work per token and per call, linear in the index data scanned.
-- ARGV[5]  '1' when this is the first filter (ids are added to dest with score 0), else '0'
--          (dest becomes its intersection with the matches, scores 0)
-- ARGV[6]  optional mode: 'store' (default, as above), 'count' (write nothing, return the
--          number of distinct matching ids) or 'top' (write nothing, return the ARGV[7]
--          smallest distinct matching ids in byte order, i.e. the first page of the
--          general path's result for a lone prefix/suffix/pattern filter)
-- ARGV[7]  k for 'top'
-- Returns  store: the number of distinct matching ids (first) or the size of the
--          intersection; count: that number; top: the list of ids. An error reply starting
--          with 'ROM_LIKE_TOO_COSTLY' (nothing written) when the matcher's budget runs out.
-- Read-only on the index; compares bytes explicitly (Lua's '<' uses the server locale).
local dest, tkey, index = KEYS[1], KEYS[2], KEYS[3]
local start, stop, lit, pat = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local first = ARGV[5] == '1'
local mode = ARGV[6] or 'store'
local plen = #lit
local find, sub = string.find, string.sub

local function less(a, b)
    local n = math.min(#a, #b)
    for i = 1, n do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then
            return x < y
        end
    end
    return #a < #b
end

local matches, limit = like_matcher(pat)

-- first rank: the first member >= (start, lit .. '\0')
local lo = redis.call('ZCOUNT', index, '-inf', '(' .. start)
if plen > 0 then
    local probe = lit .. '\0'
    local a = lo
    local b = lo + redis.call('ZCOUNT', index, start, start)
    while a < b do
        local mid = math.floor((a + b) / 2)
        local m = redis.call('ZRANGE', index, mid, mid)[1]
        if less(m, probe) then
            a = mid + 1
        else
            b = mid
        end
    end
    lo = a
end
-- last rank (exclusive): members scoring below the end bound
local hi
if stop == 'inf' then
    hi = redis.call('ZCARD', index)
else
    hi = redis.call('ZCOUNT', index, '-inf', '(' .. stop)
end

-- collect: every matching id (store), distinct ids (count) or the k smallest (top); ids are
-- decimal digits, so Lua's string '<' orders them by bytes
local ids = {}
local distinct = 0
local k = tonumber(ARGV[7] or '0')
local collect
if mode == 'store' then
    collect = function(id)
        ids[#ids + 1] = id
    end
elseif mode == 'count' then
    collect = function(id)
        if not ids[id] then
            ids[id] = true
            distinct = distinct + 1
        end
    end
else
    -- the k smallest so far, ascending, in ids[1 .. n]; ids[n] is the one to beat
    local n = 0
    collect = function(id)
        if n >= k and not (id < ids[n]) then
            return
        end
        local a
        if k <= 64 then  -- a short list: walk down from its end
            a = n + 1
            while a > 1 and id < ids[a - 1] do
                a = a - 1
            end
            if a > 1 and ids[a - 1] == id then
                return
            end
        else
            local lo_, hi_ = 1, n + 1
            while lo_ < hi_ do
                local mid = lo_ + (hi_ - lo_ - (hi_ - lo_) % 2) / 2
                if ids[mid] < id then
                    lo_ = mid + 1
                else
                    hi_ = mid
                end
            end
            if ids[lo_] == id then
                return
            end
            a = lo_
        end
        for q = n, a, -1 do
            ids[q + 1] = ids[q]
        end
        ids[a] = id
        if n < k then
            n = n + 1
        else
            ids[n + 1] = nil
        end
    end
end
local page = 100
local i = lo
local done = false
while i < hi and not done do
    local j = math.min(i + page, hi) - 1
    local members = redis.call('ZRANGE', index, i, j)
    if #members == 0 then
        break
    end
    for _, m in ipairs(members) do
        -- without a pattern, a member starting with the prefix whose last NUL comes after
        -- it matches: plain finds, no substring of the token (the common case, made cheap)
        local z = nil
        if pat == '' and (plen == 0 or find(m, lit, 1, true) == 1) then
            z = find(m, '\0', plen + 1, true)
            while z do
                local after = find(m, '\0', z + 1, true)
                if not after then
                    break
                end
                z = after
            end
        end
        if z then
            collect(sub(m, z + 1))
        else
            local token, id = string.match(m, '^(.*)%z([^%z]*)$')
            if token then
                local head = sub(token, 1, plen)
                if head == lit then
                    local ok = pat == '' or matches(token)
                    if ok == nil then
                        return redis.error_reply('ROM_LIKE_TOO_COSTLY the like() pattern needs '
                                                 .. 'more than ' .. limit() .. ' matching steps here')
                    elseif ok then
                        collect(id)
                    end
                elseif less(lit, head) then
                    -- tokens past the prefix: nothing further can match
                    done = true
                    break
                end
            end
        end
    end
    i = j + 1
    if page < 4000 then
        page = page * 2
    end
end

if mode == 'count' then
    return distinct
end
if mode == 'top' then
    return ids
end
local target = tkey
if first then
    target = dest
end
for k = 1, #ids, 1000 do
    local args = {}
    for q = k, math.min(k + 999, #ids) do
        args[#args + 1] = 0
        args[#args + 1] = ids[q]
    end
    redis.call('ZADD', target, unpack(args))
end
if first then
    return redis.call('ZCARD', dest)
end
if #ids == 0 then
    redis.call('DEL', dest)
    return 0
end
local ok = redis.pcall('ZINTERSTORE', dest, 2, tkey, dest, 'WEIGHTS', 1, 0)
redis.call('DEL', tkey)
if type(ok) == 'table' and ok['err'] then
    return redis.error_reply(ok['err'])
end
return ok
