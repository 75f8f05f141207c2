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
--          ('' in prefix mode). Never used as a Lua pattern: the matcher below takes
--          O(token length x pattern length) steps for any pattern (no backtracking), and
--          a call may spend at most BUDGET + PER_ITEM x (pattern items + token bytes) steps
--          per token matched (an item: a literal run or a wildcard run), so its work is
--          linear in the index data it scans, whatever the pattern.
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

-- the pattern as items: literal strings and gaps {min, max} (max nil: unbounded); a
-- literal is 'greedy' when no other literal follows it before an unbounded gap or the end,
-- so that only its earliest match can matter
local items = {}
do
    local i, n = 1, #pat
    while i <= n do
        local j = string.find(pat, '[%?%*%+!]', i)
        if j == i then
            local least, most = 0, 0
            while i <= n do
                local c = string.sub(pat, i, i)
                if c == '!' then
                    least, most = least + 1, most and most + 1
                elseif c == '?' then
                    most = most and most + 1
                elseif c == '+' then
                    least, most = least + 1, nil
                elseif c == '*' then
                    most = nil
                else
                    break
                end
                i = i + 1
            end
            items[#items + 1] = {gap = true, least = least, most = most}
        else
            local e = (j or n + 1) - 1
            items[#items + 1] = {gap = false, s = string.sub(pat, i, e)}
            i = e + 1
        end
    end
    local greedy = true
    for q = #items, 1, -1 do
        local it = items[q]
        if it.gap then
            if it.most == nil then
                greedy = true
            end
        else
            it.greedy = greedy
            greedy = false
        end
    end
end

-- matcher work allowed per call, in offsets examined over all tokens (each well under 1 us):
-- patterns keeping few offsets alive (any sensible one) never get near it
local BUDGET, PER_ITEM = 100000, 8
local steps, limit = 0, BUDGET

-- does the pattern match the start of tok? (nil: the budget ran out) Tracks the set of byte offsets the pattern so
-- far can end at: either every offset from 'from' on, or the sorted list 'set'.
local function matches(tok)
    local n = #tok
    local from = nil
    local set = {0}
    limit = limit + PER_ITEM * (#items + n)
    for _, it in ipairs(items) do
        if steps > limit then
            return nil
        end
        local out = {}
        if it.gap then
            local lo = from or set[1]
            if it.most == nil or from then
                from = lo + it.least
                if from > n then
                    return false
                end
                out = nil
            else
                local last = -1
                for _, p in ipairs(set) do
                    local b = math.min(p + it.most, n)
                    for q = math.max(p + it.least, last + 1), b do
                        out[#out + 1] = q
                    end
                    if b > last then
                        last = b
                    end
                end
            end
        else
            local s, len = it.s, #it.s
            if from then
                local init = from + 1
                while true do
                    local a = string.find(tok, s, init, true)
                    if not a then
                        break
                    end
                    out[#out + 1] = a - 1 + len
                    if it.greedy then
                        break
                    end
                    init = a + 1
                    steps = steps + 1
                end
                from = nil
            else
                for _, p in ipairs(set) do
                    if string.sub(tok, p + 1, p + len) == s then
                        out[#out + 1] = p + len
                        if it.greedy then
                            break
                        end
                    end
                end
            end
        end
        if out then
            if #out == 0 then
                return false
            end
            steps = steps + #set + #out
            set = out
        end
    end
    return true
end

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
local function collect(id)
    if mode == 'store' then
        ids[#ids + 1] = id
    elseif mode == 'count' then
        if not ids[id] then
            ids[id] = true
            distinct = distinct + 1
        end
    else
        local n = #ids
        if n >= k and not (id < ids[n]) then
            return
        end
        local a, b = 1, n + 1
        while a < b do
            local mid = math.floor((a + b) / 2)
            if ids[mid] < id then
                a = mid + 1
            else
                b = mid
            end
        end
        if ids[a] == id then
            return
        end
        table.insert(ids, a, id)
        if #ids > k then
            ids[#ids] = nil
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
        local token, id = string.match(m, '^(.*)%z([^%z]*)$')
        if token then
            local head = string.sub(token, 1, plen)
            if head == lit then
                local ok = pat == '' or matches(token)
                if ok == nil then
                    return redis.error_reply('ROM_LIKE_TOO_COSTLY the like() pattern needs more '
                                             .. 'than ' .. limit .. ' matching steps here')
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
