-- Which ids of a model with `_ttl` are still visible, by the server's clock.
-- KEYS[1]: the expiry sorted set <ns>:-expiry-
-- ARGV[1]: row key prefix '<ns>:'; ARGV[2 ..]: ids.
-- Returns {now in ms, then per id: '' when its row does not exist, '-' when it has no
-- expiry, else its expiry time in ms} (an id is visible when its row exists and its expiry
-- time, if any, is later than now). Read-only.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {string.format('%.0f', now)}
for i = 2, #ARGV do
    local id = ARGV[i]
    if redis.call('EXISTS', ARGV[1] .. id) == 0 then
        out[i] = ''
    else
        out[i] = redis.call('ZSCORE', KEYS[1], id) or '-'
    end
end
return out
