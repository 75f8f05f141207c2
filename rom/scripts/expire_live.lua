-- Which ids of a model with `_ttl` are still visible, by the server's clock. Read-only.
-- KEYS[1]: the expiry sorted set <ns>:-expiry-; optional KEYS[2]: a unique index hash
-- ARGV[1]: row key prefix '<ns>:'; ARGV[2 ..]: ids, or with KEYS[2] the values to look up
-- there (values not in the index are skipped, like get_unique.lua does).
-- Returns {now in ms, then per id: '' when its row does not exist, '-' when it has no
-- expiry, else its expiry time in ms} (an id is visible when its row exists and its expiry
-- time, if any, is later than now).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {string.format('%.0f', now)}
for i = 2, #ARGV do
    local id = ARGV[i]
    if KEYS[2] then
        id = redis.call('HGET', KEYS[2], id)
    end
    if not id then
        -- a value not in the unique index: no entry
    elseif redis.call('EXISTS', ARGV[1] .. id) == 0 then
        out[#out + 1] = ''
    else
        out[#out + 1] = redis.call('ZSCORE', KEYS[1], id) or '-'
    end
end
return out
