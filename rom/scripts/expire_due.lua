-- The entities of a model with `_ttl` whose expiry time has passed, with their rows (for the
-- expiry sweep, which removes them through the writer). Read-only.
-- KEYS[1]: the expiry sorted set <ns>:-expiry-
-- ARGV[1]: row key prefix '<ns>:', ARGV[2]: offset among the due ids, ARGV[3]: how many.
-- Returns {now in ms, number of due ids, expiry time of the next id not yet due or '',
-- then per id: id, its row as HGETALL returns it (empty when the row is gone)}.
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local due = redis.call('ZCOUNT', KEYS[1], '-inf', now)
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local out = {now, due, later[2] or ''}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))
for _, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGETALL', ARGV[1] .. id)
end
return out
