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
    local BUDGET, PER_ITEM = 100000, 8
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

    return matches, function() return limit end
end
