-- Shared like() matcher (prepended by rom._scripts.lua for a script whose first line is
-- "-- include: _like_match.lua").
-- like_matcher(pat): for a like() pattern ('?' zero or one byte, '*' any bytes, '+' one or
-- more, '!' exactly one, anything else literal), returns matches(tok) -> true when the
-- pattern matches the start of the bytes tok, false when not, nil when the call's work
-- budget ran out; and limit() -> the budget so far. Never uses Lua patterns: matching one
-- token takes O(token bytes x pattern bytes) steps (no backtracking, no recursion), and all
-- calls of one matcher together may take at most BUDGET steps plus PER_ITEM x (pattern items
-- + token bytes) per token matched (an item: a run of literal characters or of wildcards).
local function like_matcher(pat)
    -- the pattern as items: literal strings and gaps {min, max} (max nil: unbounded); a
    -- literal is 'greedy' when no other literal follows it before an unbounded gap or the
    -- end, so that only its earliest match can matter
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
    local BUDGET, PER_ITEM = 20000, 8
    local steps, limit = 0, BUDGET

    -- does the pattern match the start of tok? (nil: the budget ran out) Tracks the set of
    -- byte offsets the pattern so far can end at: every offset from 'from' on, or the
    -- sorted list 'set'.
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
                    local byte = len == 1 and string.byte(s)
                    for _, p in ipairs(set) do
                        local hit
                        if byte then   -- one byte: no substring to build
                            hit = string.byte(tok, p + 1) == byte
                        else
                            hit = string.sub(tok, p + 1, p + len) == s
                        end
                        if hit then
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

    -- without '?' (no gap of variable but bounded length) the pattern is a list of
    -- fixed-length blocks (literal bytes and '!') separated by unbounded gaps; then the
    -- earliest match of each block is the best one, and a block is found by string.find
    -- as a plain string or as a Lua pattern made only of escaped bytes and '.', which has
    -- no quantifier, so it cannot backtrack: O(token bytes x block bytes), in C
    local function escape(c)
        if c == '\0' then
            return '%z'
        end
        return '%' .. c
    end
    local blocks = {{parts = {}, len = 0, plain = true, least = 0}}
    for _, it in ipairs(items) do
        local block = blocks[#blocks]
        if it.gap and it.most == nil then
            blocks[#blocks + 1] = {parts = {}, len = 0, plain = true, least = it.least}
        elseif it.gap and it.most ~= it.least then
            blocks = nil
            break
        elseif it.gap then
            block.parts[#block.parts + 1] = {string.rep('.', it.least)}
            block.len, block.plain = block.len + it.least, false
        else
            block.parts[#block.parts + 1] = {string.gsub(it.s, '%W', escape), it.s}
            block.len = block.len + #it.s
        end
    end
    if blocks then
        for _, block in ipairs(blocks) do
            local text = {}
            for q, part in ipairs(block.parts) do
                -- plain blocks hold only literals: their raw bytes; else the Lua pattern
                text[q] = block.plain and part[2] or part[1]
            end
            block.text = table.concat(text)
        end
        local function simple(tok)
            local n = #tok
            local pos = 0   -- bytes matched so far
            for q, block in ipairs(blocks) do
                pos = pos + block.least
                if pos + block.len > n then
                    return false
                end
                if block.len > 0 then
                    local at
                    if q == 1 then
                        if block.plain then
                            at = string.sub(tok, 1, block.len) == block.text and 1
                        else
                            at = string.find(tok, '^' .. block.text)
                        end
                    else
                        at = string.find(tok, block.text, pos + 1, block.plain)
                    end
                    if not at then
                        return false
                    end
                    pos = at - 1 + block.len
                end
            end
            return true
        end
        return simple, function() return limit end
    end

    return matches, function() return limit end
end
