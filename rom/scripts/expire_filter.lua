-- Drop from a query's working set the ids whose expiry time has passed (server clock).
-- KEYS[1]: the working set (a sorted set of ids), KEYS[2]: the expiry set <ns>:-expiry-
-- ARGV: none. Work: min(size of the working set, number of due entries) lookups.
-- Returns the number of ids removed.
if redis.replicate_commands then
    redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = string.format('%.0f', now)
local size = redis.call('ZCARD', KEYS[1])
if size == 0 then
    return 0
end
local due = redis.call('ZCOUNT', KEYS[2], '-inf', limit)
if due == 0 then
    return 0
end
local removed = 0
local step = 1000
if due <= size then
    for offset = 0, due - 1, step do
        local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', limit, 'LIMIT', offset, step)
        if #ids > 0 then
            removed = removed + redis.call('ZREM', KEYS[1], unpack(ids))
        end
    end
else
    local gone = {}
    for offset = 0, size - 1, step do
        local ids = redis.call('ZRANGE', KEYS[1], offset, offset + step - 1)
        for _, id in ipairs(ids) do
            local score = redis.call('ZSCORE', KEYS[2], id)
            if score and tonumber(score) <= now then
                gone[#gone + 1] = id
            end
        end
    end
    for i = 1, #gone, step do
        removed = removed + redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + step - 1, #gone)))
    end
end
return removed
